#!/usr/bin/env bash
# The LoRA paper's section 7 on the default model (docs/rank-analysis.md): trains
# examples/jobs/rank-analysis.yaml (r=8 twice, r=64, one task) and analyzes the pairs.
# Usage: scripts/rank_analysis.sh [OUT]   (release build first; OUT default /tmp/sld-rank)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/sld-rank}
bin=$PWD/.build/release/swift-lora-dist
model=$HOME/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$out"
[ -f "$out/data/freedict/train.jsonl" ] || python3 examples/make_dict_data.py "$out/data" >/dev/null
cp examples/jobs/rank-analysis.yaml "$out/jobs.yaml"
export OPENBLAS_NUM_THREADS=1
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -np 2 --oversubscribe "$bin" train --jobs "$out/jobs.yaml" --threads 1
cd "$out"
"$bin" analyze --model "$model" --adapter out/rank/r8 --adapter out/rank/r64 --report r8-r64.html --overwrite
"$bin" analyze --model "$model" --adapter out/rank/r8 --adapter out/rank/r8-seed1 --report seeds.html --overwrite
"$bin" analyze --model "$model" --adapter out/rank/r8 --adapter out/rank/r64 --json >r8-r64.json
"$bin" analyze --model "$model" --adapter out/rank/r8 --adapter out/rank/r8-seed1 --no-base --json >seeds.json
# The figures of docs/rank-analysis.md: the heat maps of three modules and the energy charts,
# cut out of the reports as standalone SVG files.
mkdir -p figures
python3 - <<'PY'
import re
def svgs(path):
    html = open(path, encoding="utf-8").read()
    parts = re.split(r"<h3>", html)
    found = {"charts": re.findall(r"<svg.*?</svg>", parts[0], re.S)}
    for part in parts[1:]:
        found[part.split("</h3>")[0]] = re.findall(r"<svg.*?</svg>", part, re.S)
    return found
def save(svg, name):
    svg = svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" style="background:#fafafa" ', 1)
    open(f"figures/{name}.svg", "w", encoding="utf-8").write(svg + "\n")
pair, seeds = svgs("r8-r64.html"), svgs("seeds.html")
for layer, target in ((0, "q_proj"), (29, "v_proj")):
    name = f"model.layers.{layer}.self_attn.{target}"
    save(pair[name][0], f"phi-r8-r64-layer{layer}-{target}")
    save(pair[name][1], f"phi-random-8x64-layer{layer}-{target}")
    save(seeds[name][0], f"phi-seeds-layer{layer}-{target}")
save(pair["charts"][0], "energy-r8")
save(pair["charts"][2], "energy-r64")
PY
# Shrinking what was trained (docs/rank-analysis.md, "Shrinking what was trained").
for args in "r64 --rank 8" "r64 --energy 0.99" "r64 --energy 0.9" "r8 --rank 2"; do
  set -- $args
  "$bin" resize --model "$model" --adapter "out/rank/$1" "$2" "$3" --output "resized-$1$2$3" \
    --data data/freedict/valid.jsonl --max-seq-len 64 --overwrite
done

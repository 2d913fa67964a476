#!/usr/bin/env bash
# `train --rank auto` against a plain sweep over the same ladder (docs/rank-analysis.md,
# "rank: auto"), on the freedict task: the auto run climbs 2, 4, 8, 16, 32 with 100 updates
# per rung; the sweep (examples/jobs/rank-sweep.yaml) trains each rank from scratch for 100
# updates at the same scale. Prints each one's final validation losses and updates spent.
# Usage: scripts/rank_auto.sh [OUT]   (release build first; OUT default /tmp/sld-rank-auto)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/sld-rank-auto}
bin=$PWD/.build/release/swift-lora-dist
model=$HOME/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$out"
[ -f "$out/data/freedict/train.jsonl" ] || python3 examples/make_dict_data.py "$out/data" >/dev/null
cp examples/jobs/rank-sweep.yaml "$out/jobs.yaml"
export OPENBLAS_NUM_THREADS=1
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$out"
start=$(date +%s)
"$bin" train --model "$model" --data data/freedict/train.jsonl --validation-data data/freedict/valid.jsonl \
  --format prompt_completion --steps 100 --batch-size 16 --micro-batch 8 --max-seq-len 64 --lr 1e-3 \
  --warmup 5 --eval-every 50 --alpha 16 --rank auto --output out/auto --overwrite --local-ranks 2 --threads 1 \
  >auto.jsonl
echo "auto: $(( $(date +%s) - start )) s"
start=$(date +%s)
mpirun -np 2 --oversubscribe "$bin" train --jobs jobs.yaml --threads 1 >/dev/null
echo "sweep: $(( $(date +%s) - start )) s"
python3 - <<'PY'
import json
auto = json.load(open("out/auto/rank-search.json"))
print("auto:", [(r["rank"], round(r["validation_loss"], 4), r["decision"]) for r in auto["rungs"]],
      "kept", auto["chosen_rank"], "updates", auto["updates_trained"])
for name in ["r2", "r4", "r8", "r16", "r32"]:
    lines = [json.loads(l) for l in open(f"out/sweep/{name}/metrics.jsonl")]
    loss = [l["loss"] for l in lines if l.get("event") == "validation"][-1]
    print("sweep", name, round(loss, 4))
PY

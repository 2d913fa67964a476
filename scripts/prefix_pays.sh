#!/usr/bin/env bash
# Prompt tuning, prefix tuning and LoRA side by side (docs/prefix-tuning.md):
# examples/jobs/prefix.yaml trains each for 60 updates on Bierce's definitions (Debian's
# fortunes data); prints each adapter's trainable parameters, validation loss before the first
# update and after the last, and seconds per update.
# Usage: scripts/prefix_pays.sh [OUT]   (release build first; OUT default /tmp/sld-prefix)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/sld-prefix}
bin=$PWD/.build/release/swift-lora-dist
mkdir -p "$out"
[ -f "$out/data/devil/train.jsonl" ] || python3 examples/make_dict_data.py "$out/data" >/dev/null
cp examples/jobs/prefix.yaml "$out/jobs.yaml"
export OPENBLAS_NUM_THREADS=1
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$out"
rm -rf out/prefix
lscpu | sed -n 's/^Model name: *//p'
start=$(date +%s)
mpirun -np 2 --oversubscribe "$bin" train --jobs jobs.yaml --threads 1 >train.log
echo "train: $(( $(date +%s) - start )) s"
python3 - <<'PY'
import json, re
params = {}
for line in open("train.log"):
    m = re.match(r"\[([\w-]+)\] adapter: .* ([\d,]+) trainable parameters", line)
    if m:
        params[m.group(1)] = m.group(2)
print("| adapter | trainable parameters | validation loss: before → after 60 updates | s per update |")
print("|---|---|---|---|")
for name in ["lora", "prompt", "prefix", "prefix-mlp", "lora-prompt", "lora-prefix"]:
    lines = [json.loads(l) for l in open(f"out/prefix/{name}/metrics.jsonl")]
    v = [l["loss"] for l in lines if l.get("event") == "validation"]
    steps = [l for l in lines if l.get("event") == "step"]
    seconds = sum(l.get("seconds", 0) for l in steps) / max(len(steps), 1)
    print(f"| {name} | {params.get(name, '?')} | {v[0]:.4f} → {v[-1]:.4f} | {seconds:.3f} |")
PY

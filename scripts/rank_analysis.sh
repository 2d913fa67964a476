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

#!/usr/bin/env bash
# Side-by-side rounds of the LoRA training step, the issue-16 comparison: ours with the base
# in bf16 (its attention in bf16, and in fp32) and in f32, PyTorch + PEFT in fp32 and under
# bf16 autocast, alternating, at 1 thread and on all cores (ours as thread-ranks and as one
# rank). One line per run:
#   round layout framework tokens/s
# Usage: scripts/bench_base_precision.sh [ROUNDS] [MODEL]   (release build first)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
model=${2:-$HOME/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf}
bin=.build/release/swift-lora-dist
cores=$(nproc)
export OPENBLAS_NUM_THREADS=1
ours() {  # precision, then bench's thread options
  local precision=$1; shift
  "$bin" bench --model "$model" --base-precision "$precision" --steps 3 --warmup 1 --json "$@" |
    python3 -c 'import json, sys
r = json.load(sys.stdin)
share = r.get("fractionOfBF16Peak") or r["fractionOfPeak"]
print("%.1f (peak RSS %.0f MB, %.1f%% of its peak)" % (r["tokensPerSecond"], r["peakResidentMB"], 100 * share))'
}
theirs() {  # autocast, threads
  python3 scripts/bench_pytorch_peft.py --model "$model" --autocast "$1" --threads "$2" --steps 3 --warmup 2 2>/dev/null |
    tail -1 | python3 -c 'import json, sys
r = json.load(sys.stdin)
print("%.1f (peak RSS %.0f MB)" % (r["tokens_per_second"], r["peak_rss_mb"]))'
}
for round in $(seq 1 "$rounds"); do
  echo "$round 1-thread ours-bf16 $(ours bf16 --threads 1)"
  echo "$round 1-thread ours-bf16-attention-f32 $(ours bf16 --attention-precision f32 --threads 1)"
  echo "$round 1-thread ours-f32 $(ours f32 --threads 1)"
  echo "$round 1-thread pytorch-fp32 $(theirs none 1)"
  echo "$round 1-thread pytorch-bf16-autocast $(theirs bf16 1)"
  echo "$round $cores-cores ours-bf16-thread-ranks $(ours bf16 --local-ranks "$cores" --threads 1)"
  echo "$round $cores-cores ours-bf16-attention-f32-thread-ranks $(ours bf16 --attention-precision f32 --local-ranks "$cores" --threads 1)"
  echo "$round $cores-cores ours-bf16-one-rank $(ours bf16 --threads "$cores")"
  echo "$round $cores-cores ours-f32-thread-ranks $(ours f32 --local-ranks "$cores" --threads 1)"
  echo "$round $cores-cores pytorch-fp32 $(theirs none "$cores")"
  echo "$round $cores-cores pytorch-bf16-autocast $(theirs bf16 "$cores")"
done

#!/usr/bin/env bash
# Which phases of a training step suffer when another core loads memory: one rank pinned to
# CPU 0 runs `bench` (one thread), alternately alone and beside scripts/memory_hog.c pinned to
# CPU 1, streaming arrays of 256 MB (DRAM) and of 8 MB (cache). A stand-in for a full node,
# where every core's rank loads memory at once: a phase that slows here is one that sharing
# the memory system slows. One line per run:
#   round load GB/s-of-the-load tokens/s step phase=seconds ...
# Usage: scripts/bench_under_pressure.sh [ROUNDS] [MODEL] [bench options...]
#   (release build first; needs a C compiler and 2 CPUs; default bench: --batch 2 --seq 256)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
model=${2:-$HOME/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf}
shift $(( $# > 2 ? 2 : $# ))
options=("$@")
[ ${#options[@]} -gt 0 ] || options=(--batch 2 --seq 256)
bin=.build/release/swift-lora-dist
[ -x "$bin" ] || { echo "error: $bin is missing: swift build -c release" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "error: needs 2 CPUs (one for the rank, one for the load)" >&2; exit 1; }
work=$(mktemp -d)
hog_pid=""
trap '[ -z "$hog_pid" ] || kill "$hog_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cc -O3 -march=native -o "$work/hog" scripts/memory_hog.c
export OPENBLAS_NUM_THREADS=1
step() {  # label, GB/s
  taskset -c 0 "$bin" bench --model "$model" --threads 1 --steps 4 --warmup 1 --json "${options[@]}" |
    tail -1 | python3 -c 'import json, sys
r = json.load(sys.stdin)
phases = " ".join("%s=%.3f" % (k, v) for k, v in r["phases"][0].items() if v)
print("%s %s %.1f %.3f %s" % (sys.argv[1], sys.argv[2], r["tokensPerSecond"], r["secondsPerStep"], phases))' "$1" "$2"
}
for round in $(seq 1 "$rounds"); do
  echo "$round $(step none -)"
  for mb in 256 8; do
    taskset -c 1 "$work/hog" "$mb" 2>"$work/hog.log" &
    hog_pid=$!
    sleep 2
    line=$(step "${mb}MB" pending)
    kill "$hog_pid"; wait "$hog_pid" 2>/dev/null || true; hog_pid=""
    echo "$round ${line/pending/$(tail -1 "$work/hog.log" | cut -d' ' -f1)}"
  done
done

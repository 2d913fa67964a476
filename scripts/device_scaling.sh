#!/usr/bin/env bash
# Weak scaling of thread-ranks on a lent 16-core machine, with every rank's phases kept.
# Needs the bundle of ../shared/tools/device-bundle in .devpkg (carried), which holds the
# release binary, its libraries and a random-model generator with SmolLM2-135M's shapes.
#   device run: command `bash scripts/device_scaling.sh`, carry [".devpkg"]
# Environment: RANKS (default "1 2 4 8 16"), NOPIN_RANKS (runs with --no-pin; default "16"),
# ATTENTION_F32_RANKS (runs with fp32 attention; default "1 16"), BALANCES and
# VARIABLE_RANKS (variable-length runs: "tokens sequences" on 16 ranks, each padding-free and
# padded),
# THREADED (ranks x kernel threads layouts, each with its own pool and with the system's;
# default "1x16 4x4"), BENCH_FLAGS (extra bench flags), OUT (where the JSON goes; the device tool sets it), and
# SWIFT_LORA_DIST_HEAD_CHUNK (the output head's rows per chunk, default 256) passes through.
# Each bench: 2 sequences of 256 tokens per rank, r=8 q,v, one kernel thread per rank. The
# summary (scripts/scaling_summary.py) prints tokens/s, × one rank, the share of the
# sgemm/bf16 peak, and each phase's mean and slowest rank.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
pkg=.devpkg
out=${OUT:-/tmp/scaling}
mkdir -p "$out"
lscpu | grep -E "^(CPU\(s\)|Thread|Core|Socket|NUMA node\(s\)|Model name|L3)"
grep -o -w -E "avx512_bf16|amx_bf16|avx512f" /proc/cpuinfo | sort -u | tr '\n' ' '; echo
# Always the carried bundle's binary: a folder left from an earlier extraction may hold an older one.
rm -rf "$pkg/b" && mkdir -p "$pkg/b" && tar -xJf "$pkg/bundle.tar.xz" -C "$pkg/b" || exit 1
[ -f /tmp/rand.gguf ] || python3 "$pkg/make_random_gguf.py" /tmp/rand.gguf 30 >/dev/null || exit 1
core=Haswell; grep -q avx512f /proc/cpuinfo && grep -q GenuineIntel /proc/cpuinfo && core=SkylakeX
# shellcheck disable=SC2086 # BENCH_FLAGS are words
bench() {  # bench NAME RANKS FLAGS... (THREADS kernel threads per rank, default 1)
  local name=$1 n=$2 t=${THREADS:-1}; shift 2
  OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=$core SWIFT_LORA_DIST_BLAS_CORE=keep \
    SWIFT_LORA_DIST_KERNEL_THREADS=${KERNEL_THREADS:-own} timeout 200 \
    "$pkg/b/lib/ld-linux-x86-64.so.2" --library-path "$pkg/b/lib" "$pkg/b/swift-lora-dist" bench \
    --model /tmp/rand.gguf --json --local-ranks "$n" --threads "$t" --batch $((2 * n * t)) --seq 256 \
    --steps 2 --warmup 1 "$@" ${BENCH_FLAGS:-} >"$out/$name.json" 2>"$out/$name.err" ||
    echo "$name failed: $(tail -n 3 "$out/$name.err")"
}
for n in ${RANKS:-1 2 4 8 16}; do bench "pin-$n" "$n"; done
for n in ${NOPIN_RANKS-16}; do bench "nopin-$n" "$n" --no-pin; done
# Attention's products in fp32 beside the default (bf16 with a bf16 base on oneDNN).
for n in ${ATTENTION_F32_RANKS-1 16}; do bench "attention-f32-$n" "$n" --attention-precision f32; done
# Ranks of several kernel threads (2 sequences per core): each rank's own pool of kernel
# threads, pinned with it, against the system's pool (dispatch) as before 2026-12-07.
for layout in ${THREADED-1x16 4x4}; do
  THREADS=${layout#*x} bench "threads-$layout" "${layout%x*}"
  THREADS=${layout#*x} KERNEL_THREADS=dispatch bench "threads-$layout-dispatch" "${layout%x*}"
done
# Variable lengths (16–256 tokens, a new draw every update) at the most ranks, by each balance,
# padding-free (the default) and padded.
for balance in ${BALANCES-tokens sequences}; do
  bench "lengths-$balance" "${VARIABLE_RANKS:-16}" --min-seq 16 --balance "$balance" --steps 4
  bench "lengths-$balance-padded" "${VARIABLE_RANKS:-16}" --min-seq 16 --balance "$balance" --steps 4 \
    --no-padding-free
done
python3 scripts/scaling_summary.py "$out"/pin-*.json "$out"/nopin-*.json "$out"/attention-f32-*.json \
  "$out"/threads-*.json "$out"/lengths-*.json | tee "$out/summary.txt"

#!/usr/bin/env bash
# Does a tree of adapters pay? (docs/job-file.md, "Trees"): examples/jobs/tree.yaml trains a
# parent on a mix of two Debian-package tasks, a child per task built on it, and beside each
# child a sibling from the bare base with the same updates; prints each pair's validation
# losses (before the first update and after the last).
# Usage: scripts/tree_pays.sh [OUT]   (release build first; OUT default /tmp/sld-tree)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/sld-tree}
bin=$PWD/.build/release/swift-lora-dist
mkdir -p "$out"
[ -f "$out/data/freedict/train.jsonl" ] || python3 examples/make_dict_data.py "$out/data" >/dev/null
python3 - "$out/data" <<'PY'
import os, random, sys
root = sys.argv[1]
os.makedirs(f"{root}/mix", exist_ok=True)
for split in ["train", "valid"]:
    lines = [l for task in ["devil", "freedict"] for l in open(f"{root}/{task}/{split}.jsonl")]
    random.Random(0).shuffle(lines)
    open(f"{root}/mix/{split}.jsonl", "w").writelines(lines)
PY
cp examples/jobs/tree.yaml "$out/jobs.yaml"
export OPENBLAS_NUM_THREADS=1
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$out"
rm -rf out/tree
"$bin" plan --jobs jobs.yaml -np 2 | sed -n '/^tree:/,/^estimated/p'
start=$(date +%s)
mpirun -np 2 --oversubscribe "$bin" train --jobs jobs.yaml --threads 1 >train.jsonl
echo "train: $(( $(date +%s) - start )) s"
python3 - <<'PY'
import json
def losses(name):
    lines = [json.loads(l) for l in open(f"out/tree/{name}/metrics.jsonl")]
    v = [l["loss"] for l in lines if l.get("event") == "validation"]
    return v[0], v[-1]
g = losses("general")
print(f"general (mix, 60 updates): {g[0]:.4f} -> {g[1]:.4f}")
print("| task | child of general: before → after 30 updates | from the bare base: before → after 30 updates |")
print("|---|---|---|")
for task in ["devil", "words"]:
    c, b = losses(task), losses(task + "-bare")
    print(f"| {task} | {c[0]:.4f} → {c[1]:.4f} | {b[0]:.4f} → {b[1]:.4f} |")
PY

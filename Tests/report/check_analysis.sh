#!/usr/bin/env bash
# The `analyze` report in a real browser. Writes two PEFT adapters for the tiny tied model
# fixture (q_proj and v_proj of both layers; r=2 and r=4, fixed patterns), runs
# `swift-lora-dist analyze` on the pair with --report, loads the page in headless Chromium
# (--dump-dom) and checks the DOM: per adapter the energy and effective-rank charts (2 SVGs
# with one polyline per target), the φ heat maps of the 4 compared modules beside their
# random baselines (8 SVGs of 2 × 4 cells), the table of the 4 comparisons, and no script.
#
# Usage: Tests/report/check_analysis.sh [BINARY]   (default: the release binary)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin=${1:-$root/.build/release/swift-lora-dist}
command -v chromium >/dev/null || { echo "chromium is not installed (apt-get install chromium; launch/setup does)"; exit 1; }
[ -x "$bin" ] || { echo "no binary at $bin"; exit 1; }

dir=$(mktemp -d /tmp/sld-analysis.XXXXXX)
trap 'rm -rf "$dir"' EXIT

python3 - "$dir" <<'PY'
import json, math, os, struct, sys
root = sys.argv[1]
def adapter(name, r):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    json.dump({"peft_type": "LORA", "r": r, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
               "bias": "none", "use_rslora": False, "task_type": "CAUSAL_LM"},
              open(os.path.join(folder, "adapter_config.json"), "w"))
    tensors = []
    for layer in range(2):
        for target, out in (("q_proj", 32), ("v_proj", 16)):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{target}."
            seed = layer * 7 + len(target) + r
            tensors.append((prefix + "lora_A.weight", [r, 32], [math.sin(i * 0.37 + seed) for i in range(r * 32)]))
            tensors.append((prefix + "lora_B.weight", [out, r], [math.cos(i * 0.11 + seed) for i in range(out * r)]))
    header, payload = {}, b""
    for key, shape, values in tensors:
        header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [len(payload), len(payload) + 4 * len(values)]}
        payload += struct.pack(f"<{len(values)}f", *values)
    text = json.dumps(header, sort_keys=True).encode()
    text += b" " * (-len(text) % 8)
    open(os.path.join(folder, "adapter_model.safetensors"), "wb").write(struct.pack("<Q", len(text)) + text + payload)
adapter("r2", 2)
adapter("r4", 4)
PY

"$bin" analyze --model "$root/Tests/LoRAModelTests/Fixtures/tiny-tied" --adapter "$dir/r2" --adapter "$dir/r4" \
  --report "$dir/analysis.html"
timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$dir/profile" \
  --dump-dom "file://$dir/analysis.html" > "$dir/dom.html" 2> "$dir/chromium.log" ||
  { tail -n 20 "$dir/chromium.log"; echo "chromium failed"; exit 1; }

python3 - "$dir/dom.html" <<'PY'
import sys
from html.parser import HTMLParser

class DOM(HTMLParser):
    """Each <svg>'s aria-label and counts of the elements inside it; tags found anywhere."""
    def __init__(self):
        super().__init__()
        self.svgs, self.tags, self.inside = [], {}, None
    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "svg":
            self.inside = {"label": dict(attrs).get("aria-label", ""), "counts": {}}
            self.svgs.append(self.inside)
        elif self.inside is not None:
            self.inside["counts"][tag] = self.inside["counts"].get(tag, 0) + 1
    def handle_endtag(self, tag):
        if tag == "svg":
            self.inside = None

dom = DOM()
dom.feed(open(sys.argv[1], encoding="utf-8").read())
failures = []
def check(ok, what):
    print(("  ok   " if ok else "  FAIL ") + what)
    if not ok:
        failures.append(what)
charts = [s for s in dom.svgs if not s["label"].startswith("φ")]
maps = [s for s in dom.svgs if s["label"].startswith("φ")]
check(len(charts) == 4 and all(s["counts"].get("polyline") == 2 for s in charts),
      f"4 charts (energy, effective rank per adapter) with a line per target: {[s['counts'].get('polyline') for s in charts]}")
check(len(maps) == 8 and all(s["counts"].get("rect") == 8 for s in maps),
      f"8 heat maps (4 modules, each beside its random baseline) of 2 x 4 cells: {[s['counts'].get('rect') for s in maps]}")
check(sum(1 for s in maps if s["label"] == "φ, random baseline") == 4, "4 random baselines")
check(dom.tags.get("tr", 0) == 2 * (1 + 4) + 1 + 4, f"module tables (2 × 4 rows) and the comparison table (4 rows): {dom.tags.get('tr')} rows")
check("script" not in dom.tags and "iframe" not in dom.tags, "no script or iframe")
sys.exit(1 if failures else 0)
PY
echo "analysis report: the rendered DOM holds the charts, 8 heat maps and the tables"

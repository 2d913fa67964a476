#!/usr/bin/env bash
# The job dashboard in a real browser. Writes the outputs of the job
# Tests/LoRARunTests/Fixtures/dashboard-job.yaml by hand (metrics.jsonl lines as
# AdapterOutput writes them): a 2 x 2 sweep (rank x lr) fused on rank group 0 whose halving
# rung at update 20 stopped two members, and two adapters one after the other on group 1
# (the second taken from the queue). Then `swift-lora-dist report` writes the dashboard,
# headless Chromium loads it (--dump-dom: the DOM after parsing), and the DOM must hold the
# adapters' table (6 rows, 2 halted), the validation chart (an SVG with 6 polylines), the
# sweep grid (4 cells, 1 winner, 2 halted) and the timeline (an SVG with 3 unit bars on 2
# rows), and no script or iframe.
#
# Usage: Tests/report/check_dashboard.sh [BINARY]   (default: the release binary)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin=${1:-$root/.build/release/swift-lora-dist}
command -v chromium >/dev/null || { echo "chromium is not installed (apt-get install chromium; launch/setup does)"; exit 1; }
[ -x "$bin" ] || { echo "no binary at $bin"; exit 1; }

dir=$(mktemp -d /tmp/sld-dashboard.XXXXXX)
trap 'rm -rf "$dir"' EXIT

cp "$root/Tests/LoRARunTests/Fixtures/dashboard-job.yaml" "$dir/jobs.yaml"
python3 - "$dir" <<'PY'
import json, os, sys
root = sys.argv[1]
t0 = 1_700_000_000.0
def unit(group, placement, queued, adapters, start, end, step):
    return {"event": "unit", "step": step, "group": group, "ranks": [group, group], "placement": placement,
            "queued": queued, "adapters": adapters, "started_at": t0 + start, "finished_at": t0 + end,
            "ending": "finished"}
def write(name, base, gain, unit_line, halted_at=None):
    folder = os.path.join(root, "out", name)
    os.makedirs(folder)
    lines = [{"event": "validation", "step": 0, "loss": base, "perplexity": 1, "tokens": 100}]
    for step in range(1, (halted_at or 40) + 1):
        loss = base - gain * step
        lines.append({"event": "step", "step": step, "loss": loss, "lr": 1e-4, "grad_norm": 1, "tokens": 120,
                      "trained_tokens": 100, "seconds": 0.5, "tokens_per_second": 240, "epoch": 0.1})
        if step == halted_at:
            lines.append({"event": "halved", "step": step, "validation_loss": loss, "kept": False})
            json.dump({"step": step}, open(os.path.join(folder, "retired.json"), "w"))
        elif step % 10 == 0:
            lines.append({"event": "validation", "step": step, "loss": loss, "perplexity": 1, "tokens": 100})
    unit_line["step"] = halted_at or 40
    lines.append(unit_line)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        for line in lines:
            f.write(json.dumps(dict(line, adapter=name), sort_keys=True) + "\n")
    for file in ["adapter_model.safetensors", "report.html"]:
        open(os.path.join(folder, file), "w").write("x")
members = ["arith-r2-lr0.0001", "arith-r2-lr0.0003", "arith-r8-lr0.0001", "arith-r8-lr0.0003"]
for i, name in enumerate(members):
    write(name, 2.5, 0.01 + 0.002 * i, unit(0, "fused", False, members, 0, 300, 0),
          20 if name.endswith("lr0.0001") else None)
write("devil", 3.2, 0.02, unit(1, "shared", False, ["devil"], 1, 120, 0))
write("fortunes", 4.0, 0.01, unit(1, "shared", True, ["fortunes"], 121, 250, 0))
PY

"$bin" report --jobs "$dir/jobs.yaml"
timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$dir/profile" \
  --dump-dom "file://$dir/out/report.html" > "$dir/dom.html" 2> "$dir/chromium.log" ||
  { tail -n 20 "$dir/chromium.log"; echo "chromium failed"; exit 1; }

python3 - "$dir/dom.html" <<'PY'
import sys
from html.parser import HTMLParser

class DOM(HTMLParser):
    """Counts elements by the chain of their ancestors' (tag, id, class) and the DOM's texts."""
    def __init__(self):
        super().__init__()
        self.stack, self.found, self.text = [], [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.stack.append((tag, a.get("id", ""), a.get("class", "") or ""))
        self.found.append(list(self.stack))
    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break
    def handle_data(self, data):
        self.text.append(data)

dom = DOM()
dom.feed(open(sys.argv[1]).read())
def count(tag, inside=None, cls=None):
    return sum(1 for chain in dom.found if chain[-1][0] == tag
               and (cls is None or cls in chain[-1][2].split())
               and (inside is None or any(inside(t, i, c) for t, i, c in chain[:-1])))
checks = {
    "adapter rows in table#adapters": (count("tr", lambda t, i, c: t == "table" and i == "adapters", "adapter"), 6),
    "halted adapter rows": (count("tr", lambda t, i, c: i == "adapters", "halted"), 2),
    "svg charts (curves, timeline)": (count("svg"), 2),
    "polylines in the curves' svg": (count("polyline", lambda t, i, c: i == "curves"), 6),
    "sweep grid cells": (count("td", lambda t, i, c: t == "table" and "sweep" in c.split(), "cell"), 4),
    "winner cells": (count("td", lambda t, i, c: "sweep" in c.split(), "winner"), 1),
    "halted cells": (count("td", lambda t, i, c: "sweep" in c.split(), "halted"), 2),
    "unit bars in the timeline's svg": (count("g", lambda t, i, c: i == "timeline", "unit"), 3),
    "rects of the bars": (count("rect", lambda t, i, c: "unit" in c.split()), 3),
    "links to adapter reports": (count("a"), 10),
    "scripts and iframes": (count("script") + count("iframe"), 0),
}
text = " ".join(dom.text)
for phrase in ["stopped by successive halving at step 20", "group 1 (rank 1), shared, queued", "★ best"]:
    checks[f"text '{phrase}'"] = (int(phrase in text), 1)
failed = [f"{name}: {got}, expected {want}" for name, (got, want) in checks.items() if got != want]
for name, (got, want) in checks.items():
    print(f"  {'ok' if got == want else 'FAIL':4} {name}: {got}")
if failed:
    sys.exit("dashboard DOM check failed:\n  " + "\n  ".join(failed))
print("dashboard: the rendered DOM holds the table, 6 curves, the sweep grid and 3 timeline bars")
PY

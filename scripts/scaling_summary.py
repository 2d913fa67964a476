#!/usr/bin/env python3
"""Summarises `bench --json` results of several rank counts (scripts/device_scaling.sh).

For each file: ranks, tokens/s, × the first file's tokens/s per rank count (the one-rank
run first), share of the sgemm and bf16 peaks, waiting (mean and largest share of a rank's
step), and each phase's mean over the ranks with the slowest rank's time beside it (ms).
Usage: scaling_summary.py RESULT.json...
"""
import json
import sys

PHASES = ["frozen", "head", "loss", "lora", "attention", "elementwise", "optimizer", "waiting", "allreduce"]


def main(paths):
    rows = []
    for path in paths:
        try:
            with open(path) as f:
                rows.append((path, json.load(f)))
        except (OSError, ValueError) as error:
            print(f"{path}: no result ({error})")
    if not rows:
        return 1
    base = rows[0][1]["tokensPerSecond"] / rows[0][1]["ranks"]
    print("file | ranks | tokens/s | × one rank | sgemm peak | bf16 peak | waiting mean / max | "
          + " | ".join(f"{p} ms mean/max" for p in PHASES))
    for path, r in rows:
        phases = r.get("phases", [])
        totals = [sum(p.get(k, 0) for k in PHASES) for p in phases]
        waits = [p.get("waiting", 0) / t for p, t in zip(phases, totals) if t > 0]
        cells = []
        for k in PHASES:
            values = [1000 * p.get(k, 0) for p in phases]
            cells.append(f"{sum(values) / max(len(values), 1):.0f}/{max(values, default=0):.0f}")
        bf16 = r.get("fractionOfBF16Peak")
        print(f"{path.split('/')[-1]} | {r['ranks']} | {r['tokensPerSecond']:.0f} | "
              f"{r['tokensPerSecond'] / base:.2f} | {100 * r['fractionOfPeak']:.1f}% | "
              + (f"{100 * bf16:.1f}%" if bf16 is not None else "-")
              + f" | {100 * sum(waits) / max(len(waits), 1):.1f}% / {100 * max(waits, default=0):.1f}% | "
              + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

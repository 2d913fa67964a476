#!/usr/bin/env python3
"""Preference pairs for DPO from the demo's Debian data: for each Devil's Dictionary headword,
Ambrose Bierce's definition is preferred over a fortune cookie of about the same length.

    python3 examples/make_preference_data.py OUT_FOLDER [--pairs 400] [--valid 40] [--seed 0]

Writes OUT_FOLDER/devil-pref/{train,valid}.jsonl in TRL's preference format,
{"prompt": ..., "chosen": ..., "rejected": ...}, the prompt the one the devil adapter of the
demo is trained on (make_dict_data.py). Needs dict-devil and fortunes-min (launch/setup
installs them). Standard library only; deterministic for a seed.
"""
import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_dict_data as data  # noqa: E402


def pairs(dictd, fortunes_dir, count, seed):
    devil = [e for e in data.devil_examples(dictd) if "prompt" in e]
    cookies = [c["text"] for c in data.fortune_examples(fortunes_dir, 300)]
    if not devil or not cookies:
        sys.exit(f"error: no devil definitions or fortunes found; run '{data.APT}' as root")
    rng = random.Random(seed)
    rng.shuffle(devil)
    by_length = sorted(cookies, key=len)
    result = []
    for example in devil[:count]:
        chosen = example["completion"]
        # A fortune near the definition's length, so length alone does not tell them apart.
        i = min(range(len(by_length)), key=lambda k: abs(len(by_length[k]) - len(chosen)) + rng.random())
        rejected = " " + by_length[i].replace("\n", " ")
        if rejected.strip() == chosen.strip():
            continue
        result.append({"prompt": example["prompt"], "chosen": chosen, "rejected": rejected})
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--valid", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dictd-dir", default="/usr/share/dictd")
    parser.add_argument("--fortunes-dir", default="/usr/share/games/fortunes")
    args = parser.parse_args()
    made = pairs(args.dictd_dir, args.fortunes_dir, args.pairs + args.valid, args.seed)
    folder = os.path.join(args.out, "devil-pref")
    os.makedirs(folder, exist_ok=True)
    for name, part in [("valid", made[:args.valid]), ("train", made[args.valid:])]:
        with open(os.path.join(folder, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            for pair in part:
                f.write(json.dumps(pair, ensure_ascii=False) + "\n")
        print(f"{folder}/{name}.jsonl: {len(part)} pairs")


if __name__ == "__main__":
    main()

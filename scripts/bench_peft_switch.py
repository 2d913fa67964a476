#!/usr/bin/env python3
"""Time PEFT's task switches on the default model: the anchor of `bench-serve`'s switch figure.

For q_proj,v_proj and all-linear (r=8, B drawn at random like bench-serve's), it loads the
local GGUF with transformers (float32), adds 4 LoRA adapters to one PeftModel and times,
as medians over --rounds switches among them:
  merge + unmerge   model.merge_adapter() after set_adapter(next), then unmerge_adapter()
  set_adapter       switching the active (unmerged) adapter
It prints ONE JSON line. It re-executes itself in the reference virtualenv (scripts/refvenv.py).

    python3 scripts/bench_peft_switch.py --threads 2 --rounds 12
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_MODEL = Path("~/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf").expanduser()
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
parser.add_argument("--rank", type=int, default=8)
parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
parser.add_argument("--rounds", type=int, default=12)
ARGS = parser.parse_args()
for _var in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"]:
    os.environ[_var] = str(ARGS.threads)
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import refvenv  # noqa: E402

refvenv.ensure(__file__)

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402


def measure(targets: str) -> dict:
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(ARGS.model.parent), gguf_file=ARGS.model.name, dtype=torch.float32)
    modules = "all-linear" if targets == "all-linear" else targets.split(",")
    names = [f"a{i}" for i in range(4)]
    config = peft.LoraConfig(r=ARGS.rank, lora_alpha=2 * ARGS.rank, target_modules=modules, lora_dropout=0.0)
    model = peft.get_peft_model(model, config, adapter_name=names[0])
    for name in names[1:]:
        model.add_adapter(name, config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "lora_B"):
                for name in names:
                    b = module.lora_B[name].weight
                    b.copy_((torch.rand(b.shape, generator=generator) - 0.5) * 0.02)
    model.eval()
    merge, unmerge, switch = [], [], []
    with torch.no_grad():
        for i in range(ARGS.rounds):
            model.set_adapter(names[(i + 1) % 4])
            start = time.perf_counter()
            model.merge_adapter()
            merge.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.unmerge_adapter()
            unmerge.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.set_adapter(names[i % 4])
            switch.append(time.perf_counter() - start)
    ms = lambda values: 1e3 * statistics.median(values)  # noqa: E731
    return {"merge_ms": ms(merge), "unmerge_ms": ms(unmerge), "merge_plus_unmerge_ms": ms(merge) + ms(unmerge),
            "set_adapter_ms": ms(switch)}


def main() -> None:
    if not ARGS.model.is_file():
        sys.exit(f"model not found: {ARGS.model} (run launch/setup, or pass --model)")
    torch.set_num_threads(ARGS.threads)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    result = {"framework": "pytorch+peft", "torch": torch.__version__, "peft": peft.__version__,
              "threads": torch.get_num_threads(), "rank": ARGS.rank}
    for targets in ["q_proj,v_proj", "all-linear"]:
        result[targets] = measure(targets)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

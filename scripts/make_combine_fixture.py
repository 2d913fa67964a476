#!/usr/bin/env python3
"""Generate the adapter-combination fixture: PEFT's add_weighted_adapter on the tiny model.

A developer tool, never a test dependency: the fixture is committed and the Swift tests only
read it. It runs in the reference virtualenv (see refvenv.py):

    python3 scripts/make_combine_fixture.py [--out REPO_ROOT]

On the tiny tied Llama of Tests/LoRAModelTests/Fixtures/tiny-tied, with adapter "a" =
Tests/LoRACheckpointTests/Fixtures/peft-tiny (r 4, alpha 8, all linear layers) and adapter
"b" made here (r 2, alpha 4, all linear layers, A and B drawn from a seeded normal), it runs
`add_weighted_adapter(["a", "b"], [0.7, -0.4], ...)` with combination_type "cat", "svd"
(svd_rank 6: exact, the sum has rank ≤ 6) and "ties_svd" (density 0.5, svd_rank 3), and
records the logits of each combined adapter on a fixed batch in float32, eager attention.

Fixtures (Tests/LoRACheckpointTests/Fixtures/):
    peft-tiny-r2/                    adapter "b" as a PEFT folder
    combine-cat/                     the "cat" adapter as PEFT saves it
    combine-reference.json           {"versions", "weights", "tokens", "logits": {method: [B·T·V]}}
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import refvenv  # noqa: E402

refvenv.ensure(__file__)

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

TOKENS = [[1, 17, 42, 5, 88, 23, 61, 9, 70, 33, 2, 54], [1, 95, 3, 47, 12, 66, 8, 30, 77, 41, 19, 60]]
WEIGHTS = [0.7, -0.4]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent))
    root = Path(parser.parse_args().out)
    fixtures = root / "Tests" / "LoRACheckpointTests" / "Fixtures"
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM.from_pretrained(
        str(root / "Tests" / "LoRAModelTests" / "Fixtures" / "tiny-tied"), dtype=torch.float32).eval()
    base.config._attn_implementation = "eager"
    model = peft.PeftModel.from_pretrained(base, str(fixtures / "peft-tiny"), adapter_name="a")
    model.add_adapter("b", peft.LoraConfig(r=2, lora_alpha=4, target_modules=TARGETS, lora_dropout=0.0,
                                           bias="none", task_type="CAUSAL_LM"))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_A.b." in name or ".lora_B.b." in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, selected_adapters=["b"])
        target = fixtures / "peft-tiny-r2"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(tmp) / "b", target)

    model.add_weighted_adapter(["a", "b"], WEIGHTS, "cat", combination_type="cat")
    model.add_weighted_adapter(["a", "b"], WEIGHTS, "svd", combination_type="svd", svd_rank=6)
    model.add_weighted_adapter(["a", "b"], WEIGHTS, "ties_svd", combination_type="ties_svd", svd_rank=3,
                               density=0.5)
    logits = {}
    ids = torch.tensor(TOKENS)
    with torch.no_grad():
        for method in ["cat", "svd", "ties_svd"]:
            model.set_adapter(method)
            logits[method] = [float(x) for x in model(input_ids=ids).logits.reshape(-1)]
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, selected_adapters=["cat"])
        target = fixtures / "combine-cat"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(tmp) / "cat", target)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    (fixtures / "combine-reference.json").write_text(json.dumps(
        {"versions": versions, "weights": WEIGHTS, "tokens": TOKENS, "logits": logits}) + "\n")
    print(f"wrote {fixtures}/peft-tiny-r2, combine-cat, combine-reference.json")


if __name__ == "__main__":
    main()

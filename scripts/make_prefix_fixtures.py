#!/usr/bin/env python3
"""Prompt- and prefix-tuning fixtures: PyTorch + PEFT in float64 on the tiny-tied model.

A developer tool like make_reference.py (whose reference virtualenv and float64 patches it
uses); the fixtures it writes are committed and the Swift tests only read them:

    python3 scripts/make_prefix_fixtures.py

Tests/LoRATrainingTests/Fixtures/prefix/<case>/ for six cases: prompt (PEFT's
PROMPT_TUNING), prefix and prefix-mlp (PREFIX_TUNING without and with prefix_projection),
and lora-prompt, lora-prefix, lora-prefix-mlp (each with a LoRA adapter on every linear,
injected into the base with peft.inject_adapter_in_model and then wrapped by the prompt-
learning PeftModel, so PEFT itself runs both). Each holds

  parameters.safetensors  every trainable parameter (float32, random, non-zero) under the
                          names the tests map: prompt_embeddings, transform.0.weight/bias,
                          transform.2.weight/bias (the projection), and PEFT's LoRA keys
                          base_model.model.<module>.lora_A.weight / lora_B.weight
  reference.json          the config, the 2x9 batch with -100 labels (label 0 ignored, so the
                          last virtual token predicts nothing, as in our layout), the float64
                          causal-LM loss, every gradient, and the losses of 5 AdamW steps
  peft/                   for prompt and prefix (no projection): the adapter as PEFT's
                          save_pretrained writes it, to check that we load PEFT's format

Everything is seeded and single-threaded, so re-running gives the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refvenv  # noqa: E402

if __name__ == "__main__":
    refvenv.ensure(__file__)

import torch  # noqa: E402
import transformers  # noqa: E402

import make_reference as ref  # noqa: E402

FIXTURES = Path("Tests/LoRATrainingTests/Fixtures/prefix")
VIRTUAL_TOKENS = 3
ENCODER_HIDDEN = 12
LORA = dict(r=4, lora_alpha=8)
CASES = {
    "prompt": dict(kind="prompt", projection=None, lora=False),
    "prefix": dict(kind="prefix", projection=None, lora=False),
    "prefix-mlp": dict(kind="prefix", projection=ENCODER_HIDDEN, lora=False),
    "lora-prompt": dict(kind="prompt", projection=None, lora=True),
    "lora-prefix": dict(kind="prefix", projection=None, lora=True),
    "lora-prefix-mlp": dict(kind="prefix", projection=ENCODER_HIDDEN, lora=True),
}


def prompt_config(kind: str, projection: int | None):
    import peft

    if kind == "prompt":
        return peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS)
    extra = dict(prefix_projection=True, encoder_hidden_size=projection) if projection else {}
    return peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS, **extra)


def our_name(name: str) -> str | None:
    """PEFT parameter name -> the fixture's key."""
    if name.startswith("prompt_encoder.default."):
        rest = name[len("prompt_encoder.default."):]
        return "prompt_embeddings" if rest == "embedding.weight" else rest
    if ".lora_A.default." in name or ".lora_B.default." in name:
        module = name[len("base_model."):].replace(".default.", ".")
        return "base_model.model." + module
    return None


def build(case: dict, seed: int):
    import peft

    base = ref.load_tiny_tied(Path("."))
    if case["lora"]:
        lora = peft.LoraConfig(lora_dropout=0.0, target_modules=ref.PEFT_TARGETS, bias="none", **LORA)
        base = peft.inject_adapter_in_model(lora, base)
    model = peft.get_peft_model(base, prompt_config(case["kind"], case["projection"]))
    for name, p in model.named_parameters():
        if ".lora_" in name:
            p.requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in trainable(model):
            std = 0.2 if ".lora_A." in name else 0.1 if ".lora_B." in name else 0.3
            p.copy_(std * torch.randn(p.shape, generator=gen, dtype=torch.float32))
    return model


def trainable(model) -> list[tuple[str, torch.nn.Parameter]]:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert params and all(our_name(n) for n, _ in params), [n for n, _ in params]
    return params


def make_case(name: str, case: dict, seed: int) -> None:
    import peft
    from safetensors.torch import save_file

    print(name)
    folder = FIXTURES / name
    folder.mkdir(parents=True, exist_ok=True)
    model = build(case, seed)
    initial = {our_name(n): p.detach().clone().contiguous() for n, p in trainable(model)}
    save_file(initial, str(folder / "parameters.safetensors"))
    ref.note(folder / "parameters.safetensors")

    if not case["lora"] and not case["projection"]:
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            config = json.loads((Path(tmp) / "adapter_config.json").read_text())
            config["base_model_name_or_path"] = str(ref.MODEL_FIXTURES / "tiny-tied")
            (folder / "peft").mkdir(exist_ok=True)
            (folder / "peft" / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            shutil.copyfile(Path(tmp) / "adapter_model.safetensors", folder / "peft" / "adapter_model.safetensors")
            ref.note(folder / "peft" / "adapter_model.safetensors")

    model = model.double()
    input_ids = torch.tensor(ref.PEFT_TOKENS)
    labels = torch.tensor(ref.peft_labels())
    assert all(row[0] == -100 for row in ref.peft_labels())
    virtual = torch.full((len(ref.PEFT_TOKENS), VIRTUAL_TOKENS), -100)

    def loss_of(m) -> torch.Tensor:
        logits = m(input_ids=input_ids).logits
        if case["kind"] == "prompt":
            return ref.causal_lm_loss(logits, torch.cat([virtual, labels], dim=1))
        return ref.causal_lm_loss(logits, labels)

    with ref.llama_in_float64():
        params = trainable(model)
        for n, p in params:
            assert p.dtype == torch.float64, n
        model.zero_grad()
        loss = loss_of(model)
        loss.backward()
        grads = {our_name(n): ref.floats(p.grad) for n, p in params}
        assert all(any(g != 0.0 for g in v) for v in grads.values()), "a zero gradient"
        worst = 0.0
        with torch.no_grad():
            for n, p in params[::4]:
                flat = p.view(-1)
                for i in sorted({0, flat.numel() // 2, flat.numel() - 1}):
                    value, h = flat[i].item(), 1e-5
                    flat[i] = value + h
                    up = loss_of(model).item()
                    flat[i] = value - h
                    down = loss_of(model).item()
                    flat[i] = value
                    worst = max(worst, abs((up - down) / (2 * h) - grads[our_name(n)][i]))
        assert worst < 1e-8, f"finite differences differ from the gradients by {worst}"

        losses = ref.adamw_losses(params, lambda: loss_of(model), loss.item())
    print(f"  loss {loss.item():.12f}; finite differences within {worst:.1e}; AdamW "
          + ", ".join(f"{x:.6f}" for x in losses))
    ref.write_json(folder / "reference.json", {
        "kind": case["kind"], "virtual_tokens": VIRTUAL_TOKENS, "projection": case["projection"],
        "lora": LORA if case["lora"] else None, "lora_targets": ref.PEFT_TARGETS if case["lora"] else [],
        "input_ids": ref.PEFT_TOKENS, "labels": ref.peft_labels(), "loss": loss.item(), "grads": grads,
        "steps": {"optimizer": "AdamW", **ref.PEFT_ADAMW, "losses": losses},
        "generated_with": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "peft": ref.package_version("peft")},
    })



def main() -> None:
    os.chdir(Path(__file__).resolve().parent.parent)
    torch.manual_seed(ref.SEED)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    for i, (name, case) in enumerate(CASES.items()):
        make_case(name, case, ref.SEED + 40 + i)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fixtures of the LoRA variants and objectives beyond plain LoRA with next-token loss:
PyTorch + PEFT in float64 on the tiny-tied model, with the committed peft-tiny adapter.

A developer tool like make_reference.py (whose reference virtualenv, float64 patches and
helpers it uses); the fixtures it writes are committed and the Swift tests only read them:

    python3 scripts/make_variant_fixtures.py            # every fixture
    python3 scripts/make_variant_fixtures.py --only loraplus

Tests/LoRATrainingTests/Fixtures/peft-tiny/
  loraplus.json   LoRA+ (PEFT's create_loraplus_optimizer over torch.optim.AdamW, ratio 16,
                  lr 0.0025, else the hyperparameters of the AdamW steps in reference.json, the decay
                  passed as loraplus_weight_decay): the loss before each of 5 updates and
                  after the last

  dpo.json        DPO: two pairs (a 4-token prompt, a chosen and a rejected 5-token response
                  each) as 4 sequences [chosen 1, rejected 1, chosen 2, rejected 2]; the
                  policy's and the reference's (the same model with the adapter disabled)
                  summed response log-probabilities, TRL's DPO loss (the sigmoid loss with
                  label smoothing, cDPO; beta 0.1, label_smoothing 0.1), its metrics, and the
                  gradient of the loss for every lora_A / lora_B

Tests/LoRATrainingTests/Fixtures/peft-tiny-dora/
  adapter_config.json, adapter_model.safetensors
                  a DoRA adapter (use_dora, r 4, alpha 8, every linear) as PEFT saves it: A and
                  B random, the magnitudes PEFT's ||W0|| each times 1 + N(0, 0.1^2)
  reference.json  the loss and the gradient of every lora_A, lora_B and lora_magnitude_vector
                  on peft-tiny's batch, and the losses of 5 AdamW steps (as reference.json of
                  peft-tiny), all in float64

Tests/LoRATrainingTests/Fixtures/peft-tiny/pissa.json
                  PiSSA (init_lora_weights "pissa", r 4, alpha 8, every linear): for every
                  module PEFT's initial scaling * B @ A (W0's best rank-4 part, from its SVD), and
                  how far PEFT's model (residual base + adapter) is from the base's logits

Everything is seeded and single-threaded, so re-running gives the same files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refvenv  # noqa: E402

if __name__ == "__main__":
    refvenv.ensure(__file__)

import torch  # noqa: E402
import transformers  # noqa: E402

import make_reference as ref  # noqa: E402

LORAPLUS_RATIO = 16.0
# A's learning rate: B's (0.04) stays near plain AdamW's 0.01 of reference.json, where a
# float32 run keeps to the float64 losses within 1e-4 (at 0.16, the fifth step's loss
# differed by 2.7e-4: a large step amplifies rounding).
LORAPLUS_LR = 0.0025


def peft_tiny_float64(out: Path):
    """The committed peft-tiny adapter on tiny-tied, trainable, in float64."""
    import peft

    folder = out / ref.TRAINING_FIXTURES / "peft-tiny"
    model = peft.PeftModel.from_pretrained(ref.load_tiny_tied(out), str(folder), is_trainable=True)
    return model.double(), folder


def make_loraplus_fixture(out: Path) -> None:
    from peft.optimizers import create_loraplus_optimizer

    print("peft-tiny loraplus")
    model, folder = peft_tiny_float64(out)
    input_ids = torch.tensor(ref.PEFT_TOKENS)
    labels = torch.tensor(ref.peft_labels())
    adamw = dict(ref.PEFT_ADAMW, lr=LORAPLUS_LR)
    with ref.llama_in_float64():
        ref.lora_parameters(model)  # only lora_A / lora_B train
        optimizer = create_loraplus_optimizer(
            model=model, optimizer_cls=torch.optim.AdamW, lr=adamw["lr"], loraplus_lr_ratio=LORAPLUS_RATIO,
            betas=tuple(adamw["betas"]), eps=adamw["eps"],
            # PEFT's groups take their decay from loraplus_weight_decay (default 0), not from
            # weight_decay: ours is weight_decay for every group, so it is passed here.
            loraplus_weight_decay=adamw["weight_decay"])
        groups = {(round(g["lr"] / adamw["lr"], 9), g["weight_decay"]): len(g["params"])
                  for g in optimizer.param_groups if g["params"]}
        decay = adamw["weight_decay"]
        assert groups == {(1.0, decay): 14, (LORAPLUS_RATIO, decay): 14}, groups  # 14 A and 14 B
        losses = []
        for step in range(ref.PEFT_STEPS + 1):
            optimizer.zero_grad()
            loss = ref.causal_lm_loss(model(input_ids=input_ids).logits, labels)
            losses.append(loss.item())
            if step < ref.PEFT_STEPS:
                loss.backward()
                optimizer.step()
    assert losses[-1] < losses[0], losses
    print("  LoRA+ losses " + ", ".join(f"{x:.6f}" for x in losses))
    ref.write_json(folder / "loraplus.json", {
        "optimizer": "AdamW", **adamw, "loraplus_lr_ratio": LORAPLUS_RATIO, "losses": losses,
        "generated_with": {"torch": torch.__version__, "peft": ref.package_version("peft")},
    })


DPO_BETA = 0.1
DPO_LABEL_SMOOTHING = 0.1
DPO_PROMPTS = [[1, 17, 42, 5], [95, 0, 3, 3]]
DPO_RESPONSES = [([88, 63, 30, 7, 64], [12, 50, 2, 33, 71]), ([71, 12, 50, 2, 33], [64, 7, 30, 63, 88])]


def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected):
    """TRL's DPO loss with label smoothing (conservative DPO): the mean over pairs of
    -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h), h the difference of log-ratios."""
    import torch.nn.functional as F

    h = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return (-(1 - DPO_LABEL_SMOOTHING) * F.logsigmoid(DPO_BETA * h)
            - DPO_LABEL_SMOOTHING * F.logsigmoid(-DPO_BETA * h)).mean()


def make_dpo_fixture(out: Path) -> None:
    print("peft-tiny dpo")
    model, folder = peft_tiny_float64(out)
    tokens, labels = [], []
    for prompt, pair in zip(DPO_PROMPTS, DPO_RESPONSES):
        for response in pair:
            tokens.append(prompt + response)
            labels.append([-100] * len(prompt) + response)
    input_ids = torch.tensor(tokens)

    def response_logps(m) -> torch.Tensor:
        """[4]: each sequence's summed log-probability of its response tokens."""
        logits = m(input_ids=input_ids).logits[:, :-1, :]
        targets = torch.tensor(labels)[:, 1:]
        mask = targets != -100
        picked = torch.log_softmax(logits, dim=-1).gather(2, targets.clamp(min=0).unsqueeze(2)).squeeze(2)
        return (picked * mask).sum(dim=1)

    with ref.llama_in_float64():
        params = ref.lora_parameters(model)
        with torch.no_grad(), model.disable_adapter():
            reference = response_logps(model)
        model.zero_grad()
        policy = response_logps(model)
        assert (policy - reference).abs().min() > 1e-3, "the adapter should move every log-probability"
        loss = dpo_loss(policy[0::2], policy[1::2], reference[0::2], reference[1::2])
        loss.backward()
        grads = {ref.saved_name(n): ref.floats(p.grad) for n, p in params}
    chosen = DPO_BETA * (policy[0::2] - reference[0::2])
    rejected = DPO_BETA * (policy[1::2] - reference[1::2])
    print(f"  loss {loss.item():.12f}; rewards chosen {chosen.tolist()}, rejected {rejected.tolist()}")
    ref.write_json(folder / "dpo.json", {
        "beta": DPO_BETA, "label_smoothing": DPO_LABEL_SMOOTHING, "input_ids": tokens, "labels": labels,
        "policy_logps": policy.tolist(), "reference_logps": reference.tolist(), "loss": loss.item(),
        "metrics": {
            "reward_chosen": chosen.mean().item(), "reward_rejected": rejected.mean().item(),
            "reward_margin": (chosen - rejected).mean().item(),
            "reward_accuracy": (chosen > rejected).double().mean().item(),
            "logp_chosen": policy[0::2].mean().item(), "logp_rejected": policy[1::2].mean().item(),
        },
        "grads": grads,
        "generated_with": {"torch": torch.__version__, "peft": ref.package_version("peft")},
    })


def save_peft_folder(model, folder: Path) -> None:
    """adapter_config.json + adapter_model.safetensors as save_pretrained writes them, with a
    repository-relative base path and sorted target modules (re-runs give the same files)."""
    import json
    import shutil
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        adapter_config = json.loads((Path(tmp) / "adapter_config.json").read_text())
        adapter_config["base_model_name_or_path"] = str(ref.MODEL_FIXTURES / "tiny-tied")
        adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
        (Path(tmp) / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
        for name in ["adapter_config.json", "adapter_model.safetensors"]:
            shutil.copyfile(Path(tmp) / name, folder / name)
            ref.note(folder / name)


def file_key(param_name: str) -> str:
    """PEFT parameter name -> its key in adapter_model.safetensors (DoRA's magnitude is saved
    without ".weight")."""
    name = ref.saved_name(param_name)
    return name.removesuffix(".weight") if ".lora_magnitude_vector." in name else name


def make_dora_fixture(out: Path) -> None:
    import peft

    print("peft-tiny-dora")
    folder = out / ref.TRAINING_FIXTURES / "peft-tiny-dora"
    config = peft.LoraConfig(r=4, lora_alpha=8, use_dora=True, lora_dropout=0.0, target_modules=ref.PEFT_TARGETS,
                             bias="none", task_type="CAUSAL_LM")
    model = peft.get_peft_model(ref.load_tiny_tied(out), config)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    kinds = {n.split(".")[-3] for n, _ in params}
    assert kinds == {"lora_A", "lora_B", "lora_magnitude_vector"}, kinds
    gen = torch.Generator().manual_seed(ref.SEED + 12)
    with torch.no_grad():
        for name, p in params:
            assert p.dtype == torch.float32, name
            if ".lora_magnitude_vector." in name:
                # PEFT starts m at ||W0|| (B is zero then): moved off it so m/||W|| is not 1.
                p.mul_(1 + 0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float32))
            else:
                std = 0.2 if ".lora_A." in name else 0.1
                p.copy_(std * torch.randn(p.shape, generator=gen, dtype=torch.float32))
    initial = {file_key(n): p.detach().clone() for n, p in params}
    save_peft_folder(model, folder)
    from safetensors.torch import load_file
    saved = load_file(str(folder / "adapter_model.safetensors"))
    assert set(saved) == set(initial), sorted(set(saved) ^ set(initial))
    for name, t in saved.items():
        assert torch.equal(t, initial[name]), name

    model = model.double()
    input_ids = torch.tensor(ref.PEFT_TOKENS)
    labels = torch.tensor(ref.peft_labels())

    def loss_of(m) -> torch.Tensor:
        return ref.causal_lm_loss(m(input_ids=input_ids).logits, labels)

    with ref.llama_in_float64():
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        model.zero_grad()
        loss = loss_of(model)
        loss.backward()
        grads = {file_key(n): ref.floats(p.grad) for n, p in params}
        assert all(any(g != 0.0 for g in v) for v in grads.values()), "a zero gradient"
        # PEFT holds the norm constant in the backward (DoRA paper, 4.3): the gradients are
        # of that function, so finite differences are not a check of them here.
        with torch.no_grad():
            logits = model(input_ids=input_ids).logits
        reference = {
            "input_ids": ref.PEFT_TOKENS, "labels": ref.peft_labels(), "loss": loss.item(), "grads": grads,
            "last_logits": [ref.floats(logits[b, -1, :]) for b in range(logits.shape[0])],
            "generated_with": {"torch": torch.__version__, "peft": ref.package_version("peft")},
        }
        losses = ref.adamw_losses(params, lambda: loss_of(model), loss.item())
        print(f"  loss {loss.item():.12f}; AdamW losses " + ", ".join(f"{x:.6f}" for x in losses))
        reference["steps"] = {"optimizer": "AdamW", **ref.PEFT_ADAMW, "losses": losses}
    ref.write_json(folder / "reference.json", reference)

def make_pissa_fixture(out: Path) -> None:
    import peft

    print("peft-tiny pissa")
    base = ref.load_tiny_tied(out)
    input_ids = torch.tensor(ref.PEFT_TOKENS)
    with torch.no_grad():
        base_logits = base(input_ids=input_ids).logits.double()
    config = peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights="pissa", lora_dropout=0.0,
                             target_modules=ref.PEFT_TARGETS, bias="none", task_type="CAUSAL_LM")
    model = peft.get_peft_model(ref.load_tiny_tied(out), config)
    products = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            a = module.lora_A["default"].weight.detach().double()
            b = module.lora_B["default"].weight.detach().double()
            key = name.removeprefix("base_model.model.")
            products[key] = ref.floats(module.scaling["default"] * (b @ a))
    assert len(products) == 14, sorted(products)
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits.double()
    gap = ((logits - base_logits).abs().max() / base_logits.abs().max()).item()
    print(f"  PEFT's PiSSA model against the base: max logit difference {gap:.2e} (relative)")
    ref.write_json(out / ref.TRAINING_FIXTURES / "peft-tiny" / "pissa.json", {
        "r": 4, "lora_alpha": 8, "init_lora_weights": "pissa", "products": products,
        "peft_model_against_base": gap,
        "generated_with": {"torch": torch.__version__, "peft": ref.package_version("peft")},
    })


SECTIONS = {"loraplus": make_loraplus_fixture, "dpo": make_dpo_fixture, "dora": make_dora_fixture,
            "pissa": make_pissa_fixture}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ref.REPO_ROOT,
                        help="repository root to write the fixtures under (default: this repo)")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    args = parser.parse_args()
    torch.manual_seed(ref.SEED)
    torch.set_num_threads(1)  # reproducible float64 sums
    transformers.logging.set_verbosity_error()
    for name in args.only:
        SECTIONS[name](args.out.expanduser().resolve())


if __name__ == "__main__":
    main()

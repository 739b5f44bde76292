"""LoRA adapters on the policy (PEFT): only the adapters train, travel and are checkpointed.

With ``lora.r > 0`` the policy is the base causal LM with low-rank adapters on the chosen linear
layers (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"); the base weights
stay frozen. The env runners receive only the adapters after each update, and the environment's
frozen reference is the same base with the adapters switched off (:class:`AdaptersOff`), so an
env runner holds one copy of the base weights. A vLLM engine gets the merged weights
(:func:`merged_state_dict`); an export merges them into a plain ``transformers`` model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf_env.data.typed_config import option as _f

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoRAConfig:
    r: int = _f(0, "LoRA rank; 0 trains every weight of the policy (no adapters).")
    alpha: int = _f(16, "LoRA scaling α (the update is α/r · B·A).")
    dropout: float = _f(
        0.0,
        "Dropout on the adapters' input. Keep 0 for RL: the learner's "
        "log-probs must equal the sampler's for the same weights.",
    )
    target_modules: list = _f(DEFAULT_TARGETS, "Names of the linear layers that get adapters.")

    def __post_init__(self) -> None:
        if self.r < 0 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(
                f"lora needs r >= 0, alpha > 0 and 0 <= dropout < 1; got "
                f"{self.r}, {self.alpha}, {self.dropout}"
            )


def with_lora(model: torch.nn.Module, settings: dict) -> torch.nn.Module:
    """The model with fresh adapters (B = 0: the policy starts as the base), base frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings["r"],
        lora_alpha=settings["alpha"],
        lora_dropout=settings["dropout"],
        target_modules=list(settings["target_modules"]),
        bias="none",
    )
    return get_peft_model(model, config)


def is_lora(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def base_of(model: torch.nn.Module) -> torch.nn.Module:
    """The ``transformers`` causal LM under the adapters (they are injected into its layers)."""
    return model.get_base_model() if is_lora(model) else model


class AdaptersOff(torch.nn.Module):
    """The policy's base with its adapters disabled: the frozen reference, no second copy."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy
        self.config = base_of(policy).config
        self.generation_config = base_of(policy).generation_config

    def forward(self, **inputs):
        with self.policy.disable_adapter():
            return self.policy(**inputs)


@torch.no_grad()
def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The base's state dict under its plain ``transformers`` names, each adapted weight with its
    adapter's update added (W + α/r·B·A); the adapters are left as they are."""
    if not is_lora(model):
        return {key: value.detach() for key, value in model.state_dict().items()}
    from peft.tuners.lora import LoraLayer

    base = base_of(model)
    merged = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters)
            merged[f"{name}.weight"] = module.base_layer.weight.detach() + delta
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        plain = key.replace(".base_layer.", ".")
        merged.setdefault(plain, value.detach())
    return merged


def merged_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A plain ``transformers`` model with the adapters merged in (for export)."""
    if not is_lora(model):
        return model
    import copy

    return copy.deepcopy(model).merge_and_unload()

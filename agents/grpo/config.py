"""The GRPO family's settings: the ``grpo:`` section of a training config."""

from __future__ import annotations

from dataclasses import dataclass

from agents.core.correction import CORRECTIONS
from agents.grpo.advantages import ADVANTAGES
from agents.grpo.loss import AGGREGATIONS
from rlhf_env.data.typed_config import option as _f

KL_PLACES = ("loss", "reward")


@dataclass
class GRPOSettings:
    group_size: int = _f(
        4, "Responses sampled per prompt (k); advantages are relative to the group's scores."
    )
    prompts_per_iteration: int = _f(8, "Prompt groups trained on per iteration.")
    epochs: int = _f(1, "Optimisation epochs over each iteration's responses.")
    minibatch_groups: int = _f(8, "Prompt groups per minibatch (over all learners).")
    lr: float = _f(1e-5, "Adam learning rate of the policy.")
    grad_clip: float = _f(1.0, "Clip the global gradient norm to this.")
    advantage: str = _f(
        "grpo",
        "grpo (eq. 28: divide by the group std), dr_grpo (eq. 29: "
        "do not), rloo (eq. 30: leave-one-out baseline).",
    )
    aggregation: str = _f(
        "token",
        "token (DAPO), sequence (GRPO) or constant (Dr. GRPO): how "
        "per-token terms are averaged over the batch (eq. 32).",
    )
    sequence_ratio: bool = _f(False, "GSPO: one length-normalised ratio per sequence (eq. 33).")
    clip_low: float = _f(0.2, "ε_low: the ratio is clipped from below at 1 − ε_low (eq. 31).")
    clip_high: float = _f(
        0.28, "ε_high: clipped from above at 1 + ε_high; DAPO's clip-higher is 0.28 (eq. 31)."
    )
    kl_in: str = _f(
        "loss",
        "Where the KL to the reference goes (eq. 34): loss (β·k3 in the "
        "loss, scores rank the group) or reward (the environment's per-token "
        "penalty, returns rank the group). β comes from the kl section.",
    )
    dynamic_sampling: bool = _f(
        True, "Drop groups whose scores are all equal and sample more prompts (eq. 35)."
    )
    max_sampling_rounds: int = _f(3, "Bound on the sampling rounds dynamic sampling may add.")
    correction: str = _f(
        "none",
        "Rollout correction between the sampler's and the learner's "
        "log-probs (eqs. 36-38): none, tis, mask_token, mask_sequence.",
    )
    correction_cap: float = _f(
        2.0, "C of the correction: weights truncated at C (tis) or kept within [1/C, C] (mask)."
    )

    def __post_init__(self) -> None:
        for name, value, choices in (
            ("advantage", self.advantage, ADVANTAGES),
            ("aggregation", self.aggregation, AGGREGATIONS),
            ("kl_in", self.kl_in, KL_PLACES),
            ("correction", self.correction, CORRECTIONS),
        ):
            if value not in choices:
                raise ValueError(f"grpo.{name} must be one of {choices}, got {value!r}")
        if self.group_size < 2:
            raise ValueError(f"grpo.group_size must be >= 2, got {self.group_size}")
        for name in ("prompts_per_iteration", "epochs", "minibatch_groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"grpo.{name} must be >= 1, got {getattr(self, name)}")
        if not (0 < self.clip_low < 1 and self.clip_high > 0):
            raise ValueError("grpo.clip_low must lie in (0, 1) and grpo.clip_high be > 0")
        if self.correction_cap <= 1:
            raise ValueError(f"grpo.correction_cap must be > 1, got {self.correction_cap}")

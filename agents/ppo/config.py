"""PPO's settings: the ``ppo:`` section of a training config (help text on every field)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from agents.core.correction import CORRECTIONS
from rlhf_env.data.typed_config import option as _f


@dataclass
class PPOSettings:
    episodes_per_iteration: int = _f(
        32,
        "Episodes sampled per training iteration (the batch); "
        "a multiple of the environments of all env runners.",
    )
    epochs: int = _f(4, "Optimisation epochs over each batch.")
    minibatch_episodes: int = _f(
        8, "Episodes per minibatch (over all learners); an episode is never split."
    )
    lr: float = _f(1e-5, "Adam learning rate of policy and critic.")
    grad_clip: float = _f(1.0, "Clip the global gradient norm to this.")
    clip_eps: float = _f(0.2, "Clip range ε of the ratio (docs/formulation.md eq. 12).")
    vf_coef: float = _f(0.1, "Weight c_v of the critic loss (eq. 15).")
    entropy_coef: float = _f(0.0, "Weight c_H of the entropy bonus (eq. 15).")
    value_clip: Optional[float] = _f(0.2, "Clip range of the value update (eq. 13); null: off.")
    gamma: float = _f(1.0, "Discount γ of GAE (eq. 7).")
    lam: float = _f(0.95, "λ of GAE (eq. 8).")
    whiten_advantages: bool = _f(True, "Whiten advantages over the batch (eq. 10).")
    correction: str = _f(
        "none",
        "Rollout correction between the sampler's and the learner's "
        "log-probs (eqs. 36-38): none, tis, mask_token, mask_sequence.",
    )
    correction_cap: float = _f(
        2.0, "C of the correction: weights truncated at C (tis) or kept within [1/C, C] (mask)."
    )
    critic: str = _f(
        "shared",
        "'shared': value head on the policy backbone; 'separate': its own copy of the backbone.",
    )

    def __post_init__(self) -> None:
        if self.correction not in CORRECTIONS:
            raise ValueError(
                f"ppo.correction must be one of {CORRECTIONS}, got {self.correction!r}"
            )
        if self.critic not in ("shared", "separate"):
            raise ValueError(f"ppo.critic must be 'shared' or 'separate', got {self.critic!r}")
        for name in ("episodes_per_iteration", "epochs", "minibatch_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"ppo.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.clip_eps <= 0:
            raise ValueError("ppo.lr and ppo.clip_eps must be > 0")

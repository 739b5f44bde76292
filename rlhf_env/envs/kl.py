"""KL-to-reference estimators, the per-token RLHF reward, and "KL per token".

With the log-ratio ``d = log π_old(a|s) − log π_ref(a|s)`` of the sampled token
(docs/formulation.md eq. 1; Schulman 2020, "Approximating KL Divergence"):

- ``k1 = d``                         unbiased, can be negative (the default; eq. 3);
- ``k2 = ½ d²``                      biased, always ≥ 0, low variance (eq. 4);
- ``k3 = (ρ − 1) − log ρ``, ρ = π_ref/π_old = exp(−d)   unbiased and always ≥ 0 (eq. 5).

The per-token reward is ``r_t = −β·k(t)``, plus the episode's score on its last token (eq. 2;
Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences"). The estimators take
Python floats (the environment, one token at a time) or torch tensors (a learner's loss,
elementwise). :func:`kl_per_token` is the one definition of "KL per token" (eq. 6) that every
metric, evaluation and plot uses.
"""

from __future__ import annotations

import math

import torch

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logprob, ref_logprob, estimator: str = "k1"):
    """KL(π_old ‖ π_ref) estimate of sampled tokens from their two log-probs (floats or tensors)."""
    log_ratio = logprob - ref_logprob
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio * log_ratio
    if estimator == "k3":
        # ρ = π_ref/π_old; expm1 keeps (ρ − 1) accurate when the policies are close.
        expm1 = torch.expm1 if torch.is_tensor(log_ratio) else math.expm1
        return expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {KL_ESTIMATORS}")


def token_reward(kl: float, kl_coef: float, score: float | None = None) -> float:
    """docs/formulation.md eq. 2: ``r_t = −β·kl_t``, and ``+ score`` on the episode's last token."""
    reward = -kl_coef * kl
    return reward + score if score is not None else reward


def kl_per_token(episode_kls, lengths) -> float:
    """KL per token of a batch of episodes: their summed KL over their total response tokens
    (docs/formulation.md eq. 6), a token-weighted mean, not the mean of per-episode averages."""
    tokens = sum(lengths)
    return float(sum(episode_kls)) / tokens if tokens else 0.0

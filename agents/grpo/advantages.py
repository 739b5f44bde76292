"""Group-relative advantages: one advantage per response, from the scores of the k responses to
the same prompt (docs/formulation.md eqs. 28-30)."""

from __future__ import annotations

import torch

ADVANTAGES = ("grpo", "dr_grpo", "rloo")


def group_advantages(scores: torch.Tensor, kind: str = "grpo", eps: float = 1e-4) -> torch.Tensor:
    """Advantages [G, k] of G groups of k scores each.

    - ``grpo`` (eq. 28; Shao et al. 2024): (R_i − mean R) / (std R + ε), the sample std;
    - ``dr_grpo`` (eq. 29; Liu et al. 2025): R_i − mean R, no division by the std;
    - ``rloo`` (eq. 30; Ahmadian et al. 2024): R_i − mean of the other k − 1 scores.
    A group whose scores are all equal gets advantages 0 under every kind.
    """
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be [groups, k >= 2], got {tuple(scores.shape)}")
    scores = scores.double()
    mean = scores.mean(dim=1, keepdim=True)
    if kind == "grpo":
        advantages = (scores - mean) / (scores.std(dim=1, keepdim=True) + eps)
    elif kind == "dr_grpo":
        advantages = scores - mean
    elif kind == "rloo":
        k = scores.shape[1]
        advantages = scores - (scores.sum(dim=1, keepdim=True) - scores) / (k - 1)
    else:
        raise ValueError(f"unknown advantage {kind!r}; choose one of {ADVANTAGES}")
    return advantages.float()

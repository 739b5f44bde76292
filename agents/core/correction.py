"""Rollout correction: importance weights between the learner's and the sampler's log-probs of
the sampled tokens (docs/formulation.md eqs. 36-38).

A vLLM engine, bf16 sampling or any other numerical difference makes the sampler's π_sampler
differ from the learner's π_learner_old for the same weights. The learner then recomputes the
log-probs of the sampled tokens before updating (its π_old), and multiplies each token's
policy-gradient term by a weight w_t = π_learner_old/π_sampler: truncated at C (TIS, Yao et al.
2025) or zeroed where it leaves [1/C, C], per token or per sequence (masked IS).
"""

from __future__ import annotations

import torch

from agents.core.masked import masked_mean

CORRECTIONS = ("none", "tis", "mask_token", "mask_sequence")


def importance_weights(
    learner_logprobs: torch.Tensor,
    sampler_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kind: str,
    cap: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """[N, T] weights (1 on padding) and the metrics ``is_ratio_mean``, ``is_ratio_max``,
    ``masked_fraction`` and ``logprob_abs_diff`` over the real tokens."""
    if kind not in CORRECTIONS:
        raise ValueError(f"unknown rollout correction {kind!r}; choose one of {CORRECTIONS}")
    mask = mask.bool()
    log_w = torch.where(mask, learner_logprobs - sampler_logprobs, 0).detach()
    w = torch.exp(log_w)  # eq. 36
    if kind == "tis":  # eq. 37
        weights = w.clamp(max=cap)
    elif kind == "mask_token":  # eq. 38, per token
        weights = ((w >= 1 / cap) & (w <= cap)).float()
    elif kind == "mask_sequence":  # eq. 38, per sequence on the geometric-mean weight
        mean_log_w = log_w.sum(-1) / mask.sum(-1).clamp(min=1)
        keep = (mean_log_w >= -torch.log(torch.tensor(cap))) & (
            mean_log_w <= torch.log(torch.tensor(cap))
        )
        weights = keep.float()[:, None].expand_as(w).clone()
    else:
        weights = torch.ones_like(w)
    weights = torch.where(mask, weights, 1.0)
    stats = {
        "is_ratio_mean": masked_mean(w, mask),
        "is_ratio_max": w[mask].max(),
        "masked_fraction": masked_mean((weights == 0).float(), mask),
        "logprob_abs_diff": masked_mean(log_w.abs(), mask),
    }
    return weights, stats

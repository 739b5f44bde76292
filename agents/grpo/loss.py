"""The GRPO-family policy loss over padded token batches (docs/formulation.md eqs. 31-34, and
the importance weights of eqs. 36-38).

Every response i of the batch has one advantage A_i for all its tokens. The per-token term is
PPO's clipped surrogate with an asymmetric clip range (eq. 31; DAPO's "clip-higher", Yu et al.
2025), or, with ``sequence_ratio``, one clipped term per sequence on its length-normalised ratio
(eq. 33; GSPO, Zheng et al. 2025). The terms are aggregated over the batch per token (DAPO), per
sequence (GRPO) or with a constant normaliser (Dr. GRPO) (eq. 32). With several learners the
caller passes the ``denominator`` of the global minibatch (tokens, or sequences).
"""

from __future__ import annotations

import torch

from agents.core.masked import masked_mean

AGGREGATIONS = ("token", "sequence", "constant")


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    aggregation: str = "token",
    sequence_ratio: bool = False,
    max_tokens: int | None = None,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    weights: torch.Tensor | None = None,
    denominator: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of eqs. 31-34 and its statistics.

    Args:
        logprobs: [N, T] log π_θ of the sampled tokens (carries gradients).
        old_logprobs: [N, T] log π_old of the same tokens (the anchor of the ratio).
        advantages: [N] one advantage per response (:mod:`agents.grpo.advantages`).
        mask: [N, T], true on real response tokens.
        clip_low, clip_high: ε_low, ε_high: the ratio is clipped to [1 − ε_low, 1 + ε_high].
        aggregation: ``token`` (Σ over tokens / tokens), ``sequence`` (mean over sequences of
            each sequence's token mean) or ``constant`` (Σ over tokens / (sequences ·
            ``max_tokens``)). Ignored with ``sequence_ratio`` (one term per sequence).
        sequence_ratio: GSPO's ratio exp(mean_t (log π_θ − log π_old)) per sequence.
        max_tokens: L_max of the constant normaliser (the generation budget).
        ref_logprobs: [N, T] log π_ref, for the k3 KL term β·k3 aggregated as the policy term
            (eq. 34); with ``kl_coef`` 0 it is only measured.
        kl_coef: β of that term.
        weights: [N, T] importance weights between learner and sampler (eqs. 36-38; detached),
            multiplying each token's term (each sequence's, with ``sequence_ratio``: their
            geometric mean is expected there, constant over the sequence).
        denominator: the token (``token``) or sequence (``sequence``, ``constant``, GSPO) count
            the sums are divided by; default: this batch's own.

    Returns:
        ``(loss, stats)`` with detached scalars: ``policy_loss``, ``kl`` (mean k3 per token),
        ``ratio_mean``, ``clip_low_fraction`` and ``clip_high_fraction`` (shares of tokens or
        sequences whose ratio is clipped below / above with a non-zero gradient cut).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {AGGREGATIONS}")
    if aggregation == "constant" and not sequence_ratio and not max_tokens:
        raise ValueError("the constant normaliser needs max_tokens (the generation budget)")
    if advantages.shape != mask.shape[:1] or logprobs.shape != mask.shape:
        raise ValueError(
            f"expected logprobs [N, T], mask [N, T] and advantages [N]; got "
            f"{tuple(logprobs.shape)}, {tuple(mask.shape)}, "
            f"{tuple(advantages.shape)}"
        )
    mask = mask.bool()
    lengths = mask.sum(-1).clamp(min=1)
    log_ratio = torch.where(mask, logprobs - old_logprobs, 0)
    weights = torch.ones_like(logprobs) if weights is None else weights.detach()

    if sequence_ratio:  # eq. 33: one ratio and one clipped term per sequence
        ratio = torch.exp(log_ratio.sum(-1) / lengths)
        clipped = ratio.clamp(1 - clip_low, 1 + clip_high)
        per_sequence = torch.min(ratio * advantages, clipped * advantages) * weights[:, 0]
        count = denominator if denominator is not None else torch.tensor(float(len(ratio)))
        policy_loss = -per_sequence.sum() / count
        cut_low = (ratio < 1 - clip_low) & (advantages < 0)
        cut_high = (ratio > 1 + clip_high) & (advantages > 0)
        shares = {
            "clip_low_fraction": cut_low.float().mean(),
            "clip_high_fraction": cut_high.float().mean(),
            "ratio_mean": ratio.mean(),
        }
    else:  # eq. 31 per token, aggregated by eq. 32
        ratio = torch.exp(log_ratio)
        adv = advantages[:, None]
        clipped = ratio.clamp(1 - clip_low, 1 + clip_high)
        per_token = torch.where(mask, torch.min(ratio * adv, clipped * adv) * weights, 0)
        policy_loss = -_aggregate(per_token, mask, lengths, aggregation, max_tokens, denominator)
        cut_low = mask & (ratio < 1 - clip_low) & (adv < 0)
        cut_high = mask & (ratio > 1 + clip_high) & (adv > 0)
        shares = {
            "clip_low_fraction": masked_mean(cut_low.float(), mask),
            "clip_high_fraction": masked_mean(cut_high.float(), mask),
            "ratio_mean": masked_mean(ratio, mask),
        }

    loss = policy_loss
    stats = {"policy_loss": policy_loss.detach(), **{k: v.detach() for k, v in shares.items()}}
    if ref_logprobs is not None:
        # eq. 34 with eq. 5: k3 = π_ref/π_θ − log(π_ref/π_θ) − 1, aggregated like the policy term.
        log_ref_ratio = torch.where(mask, ref_logprobs - logprobs, 0)
        k3 = torch.where(mask, torch.expm1(log_ref_ratio) - log_ref_ratio, 0)
        stats["kl"] = masked_mean(k3.detach(), mask)
        if kl_coef:
            how = "sequence" if sequence_ratio else aggregation
            loss = loss + kl_coef * _aggregate(k3, mask, lengths, how, max_tokens, denominator)
    return loss, stats


def _aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    lengths: torch.Tensor,
    aggregation: str,
    max_tokens: int | None,
    denominator: torch.Tensor | float | None,
) -> torch.Tensor:
    """eq. 32: Σ over tokens / tokens, mean over sequences of token means, or Σ / (G · L_max)."""
    if aggregation == "token":
        count = denominator if denominator is not None else mask.sum()
        return per_token.sum() / count
    count = denominator if denominator is not None else torch.tensor(float(len(per_token)))
    if aggregation == "sequence":
        return (per_token.sum(-1) / lengths).sum() / count
    return per_token.sum() / (count * max_tokens)

"""The PPO-Clip actor-critic loss over padded token batches (docs/formulation.md eqs. 11-15).

Schulman et al. 2017, "Proximal Policy Optimization Algorithms". Every mean is over the real
response tokens of the minibatch, so padding changes nothing; with several learners the caller
passes the ``denominator`` that makes it a mean over the global minibatch
(:meth:`agents.core.learner.RowMinibatchLearner.mean_denominator`). The reported statistics
follow CleanRL's set (Huang et al. 2022, "The 37 Implementation Details of PPO").
"""

from __future__ import annotations

import torch

from agents.core.masked import masked_mean, masked_sum, masked_var


def explained_variance(
    values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``1 − Var(return − V) / Var(return)`` over real tokens: 1 is a perfect critic, ≤ 0 useless.

    NaN when the returns have no variance (as in CleanRL).
    """
    var_returns = masked_var(returns, mask, unbiased=False)
    var_residual = masked_var(returns - values, mask, unbiased=False)
    return torch.where(var_returns > 0, 1 - var_residual / var_returns, torch.nan)


def ppo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    entropy: torch.Tensor | None,
    *,
    clip_eps: float = 0.2,
    vf_coef: float = 0.1,
    ent_coef: float = 0.0,
    value_clip: float | None = None,
    denominator: torch.Tensor | float | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-Clip loss ``actor_loss + c_v·critic_loss − c_H·entropy`` (docs/formulation.md eq. 15).

    Args:
        logprobs: [N, T] log π_θ(a_t|s_t) from the policy being trained (carries gradients).
        old_logprobs: [N, T] log π_old(a_t|s_t) recorded when the tokens were sampled.
        advantages: [N, T] A_t (from :func:`agents.ppo.gae.gae`, whitened or not).
        values: [N, T] V_θ(s_t) from the critic being trained (carries gradients).
        old_values: [N, T] V_old(s_t) from the rollout; used only for value clipping.
        returns: [N, T] value targets return_t.
        mask: [N, T], 1 on real response tokens.
        entropy: [N, T] policy entropy per position, or None (allowed only when ``ent_coef == 0``).
        clip_eps: ε of the ratio clip.
        vf_coef: c_v, the critic loss weight (0.1, as in TRL's original PPO).
        ent_coef: c_H, the entropy bonus weight.
        value_clip: if set, the critic's move from V_old is clipped to ±value_clip and the worse
            of the clipped and unclipped squared errors is used.
        denominator: what the token sums of the three loss terms are divided by (default: the
            number of real tokens, a plain masked mean).
        weights: [N, T] importance weights of a rollout correction (eqs. 36-38), multiplying
            each token's clipped surrogate; detached.

    Returns:
        ``(loss, stats)``; ``stats`` holds detached scalars: ``actor_loss``, ``critic_loss``,
        ``entropy`` (when given), ``approx_kl`` (k3 estimate of KL(π_old ‖ π_θ):
        mean((ratio − 1) − log ratio), CleanRL's ``approx_kl``), ``clip_fraction`` (share of
        tokens whose ratio lies outside [1−ε, 1+ε]), ``ratio_mean``, ``value_mean`` and
        ``explained_variance`` (of ``values`` for ``returns``).
    """
    tensors = {
        "logprobs": logprobs,
        "old_logprobs": old_logprobs,
        "advantages": advantages,
        "values": values,
        "old_values": old_values,
        "returns": returns,
        "entropy": entropy,
    }
    for name, tensor in tensors.items():
        if tensor is not None and tensor.shape != mask.shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, mask {tuple(mask.shape)}")
    if entropy is None and ent_coef != 0:
        raise ValueError(f"ent_coef={ent_coef} needs the entropy tensor, got None")
    if value_clip is not None and value_clip <= 0:
        raise ValueError(f"value_clip must be positive or None, got {value_clip}")
    mask = mask.bool()
    # Zero the padding first, so that garbage there (even NaN) reaches no loss and no gradient.
    logprobs, old_logprobs, advantages, values, old_values, returns, entropy = (
        None if tensor is None else torch.where(mask, tensor, 0) for tensor in tensors.values()
    )

    if denominator is None:
        if not mask.any():
            raise ValueError("PPO loss over a batch with no real tokens (mask is all zero)")
        denominator = mask.sum()

    def mean(x: torch.Tensor) -> torch.Tensor:
        return masked_sum(x, mask) / denominator

    # docs/formulation.md eq. 11: ratio_t = exp(log π_θ(a_t|s_t) − log π_old(a_t|s_t)).
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    # eq. 12: actor_loss = −mean(min(ratio·A, clip(ratio, 1−ε, 1+ε)·A)).
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    if weights is not None:  # eqs. 37-38: the rollout correction's weight of each token
        surrogate = surrogate * weights.detach()
    actor_loss = -mean(surrogate)

    # eq. 13: critic_loss = ½·mean((V_θ(s_t) − return_t)²), optionally value-clipped:
    # V_clip = V_old + clip(V − V_old, ±c), and the worse of the two errors.
    squared_error = (values - returns) ** 2
    if value_clip is not None:
        clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
        squared_error = torch.max(squared_error, (clipped - returns) ** 2)
    critic_loss = 0.5 * mean(squared_error)

    # eq. 15: loss = actor_loss + c_v·critic_loss − c_H·entropy (eq. 14).
    loss = actor_loss + vf_coef * critic_loss
    stats = {"actor_loss": actor_loss.detach(), "critic_loss": critic_loss.detach()}
    if entropy is not None:
        mean_entropy = mean(entropy)
        loss = loss - ent_coef * mean_entropy
        stats["entropy"] = mean_entropy.detach()

    with torch.no_grad():
        stats["approx_kl"] = masked_mean((ratio - 1) - log_ratio, mask)
        stats["clip_fraction"] = masked_mean(((ratio - 1).abs() > clip_eps).float(), mask)
        stats["ratio_mean"] = masked_mean(ratio, mask)
        stats["value_mean"] = masked_mean(values, mask)
        stats["explained_variance"] = explained_variance(values, returns, mask)
    return loss, stats

"""The PPO-Clip actor-critic loss over padded token batches, and per-token log-probs/entropy.

Implements SPEC.md section 2 ("PPO losses"; seed 001 formulas 6-9, seed 000 PPO-Clip): every
mean is a masked mean over the real response tokens of the whole batch, so padding changes
nothing. The reported statistics follow CleanRL's set (Huang et al., "The 37 Implementation
Details of PPO").
"""

from __future__ import annotations

import torch

from agents.ppo.gae import masked_mean, masked_var


def token_logprobs_and_entropy(
    logits: torch.Tensor, tokens: torch.Tensor, entropy_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each response token and the policy's entropy at its position.

    Args:
        logits: [N, T, V], the policy's logits at the positions that predict each response token
            (for a causal LM, the logits one position before each token).
        tokens: [N, T] token ids.
        entropy_grad: pass False when the entropy only gets logged (``ent_coef == 0``): it is then
            computed without autograd, which keeps no extra [N, T, V] tensors for the backward.

    Returns:
        ``(logprobs, entropy)``, both [N, T] float32. ``log_softmax`` runs once (in float32, so
        bf16 logits lose nothing); entropy is ``−Σ_v p log p`` from the same log-probs.
    """
    if logits.shape[:-1] != tokens.shape:
        raise ValueError(
            f"logits [N, T, V] and tokens [N, T] disagree: {tuple(logits.shape)} vs "
            f"{tuple(tokens.shape)}"
        )
    logp = torch.log_softmax(logits.float(), dim=-1)
    logprobs = logp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        entropy = -(logp.exp() * logp).sum(-1)
    return logprobs, entropy


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
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-Clip loss ``actor_loss + c_v·critic_loss − c_H·entropy`` (SPEC.md section 2).

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
        vf_coef: c_v, the critic loss weight (seed 001: 0.1).
        ent_coef: c_H, the entropy bonus weight.
        value_clip: if set, the critic's move from V_old is clipped to ±value_clip and the worse
            of the clipped and unclipped squared errors is used.

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

    # SPEC.md section 2, ratio_t = exp(log π_θ(a_t|s_t) − log π_old(a_t|s_t)) (seed 001 formula 7).
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    # SPEC.md section 2, actor_loss = −mean(min(ratio·A, clip(ratio, 1−ε, 1+ε)·A)) (seed 000).
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    actor_loss = -masked_mean(surrogate, mask)

    # SPEC.md section 2, critic_loss = ½·mean((V_θ(s_t) − return_t)²) (seed 001 formula 8).
    squared_error = (values - returns) ** 2
    if value_clip is not None:
        # SPEC.md section 2, "optionally value-clipped": V_clip = V_old + clip(V − V_old, ±c).
        clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
        squared_error = torch.max(squared_error, (clipped - returns) ** 2)
    critic_loss = 0.5 * masked_mean(squared_error, mask)

    # SPEC.md section 2, loss = actor_loss + c_v·critic_loss − c_H·entropy (seed 001 formula 9).
    loss = actor_loss + vf_coef * critic_loss
    stats = {"actor_loss": actor_loss.detach(), "critic_loss": critic_loss.detach()}
    if entropy is not None:
        mean_entropy = masked_mean(entropy, mask)
        loss = loss - ent_coef * mean_entropy
        stats["entropy"] = mean_entropy.detach()

    with torch.no_grad():
        stats["approx_kl"] = masked_mean((ratio - 1) - log_ratio, mask)
        stats["clip_fraction"] = masked_mean(((ratio - 1).abs() > clip_eps).float(), mask)
        stats["ratio_mean"] = masked_mean(ratio, mask)
        stats["value_mean"] = masked_mean(values, mask)
        stats["explained_variance"] = explained_variance(values, returns, mask)
    return loss, stats

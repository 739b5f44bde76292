"""Advantages and returns for padded batches of LLM episodes, and masked batch statistics.

A batch holds N episodes, one per row, right-padded to T response tokens; ``mask`` is 1 on real
tokens. Every episode in the batch is over: it ended at EOS (termination) or at
``max_new_tokens`` (truncation), and in LLM RLHF both mean the response is finished and scored,
so the value after a row's last real token is 0 (no bootstrap).

References: SPEC.md section 2 ("Advantages and returns"), seed 003's GAE loop (TRL's original
``compute_advantages``), Schulman et al. 2016, "High-Dimensional Continuous Control Using
Generalized Advantage Estimation". The masked statistics are shared with :mod:`agents.ppo.loss`.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the real tokens (``mask`` true); padding, even NaN, never leaks in."""
    mask = mask.bool()
    if not mask.any():
        raise ValueError("masked mean over a batch with no real tokens (mask is all zero)")
    return torch.where(mask, x, 0).sum() / mask.sum()


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` over the real tokens; ``unbiased`` applies Bessel's correction."""
    mask = mask.bool()
    count = int(mask.sum())
    if unbiased and count < 2:
        raise ValueError(f"unbiased masked variance needs at least 2 real tokens, got {count}")
    centred = x - masked_mean(x, mask)
    return torch.where(mask, centred * centred, 0).sum() / (count - 1 if unbiased else count)


def whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise ``x`` to zero mean and unit variance over the real tokens; 0 on padding.

    SPEC.md section 2 makes advantage whitening optional and on by default. With
    ``shift_mean=False`` the mean is added back, so only the scale changes (TRL's convention).
    Statistics are over the whole batch, not per row, and use the unbiased variance.
    """
    mask = mask.bool()
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, 0)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and value targets for a right-padded batch.

    Args:
        rewards: [N, T] per-token rewards r_t (SPEC.md section 2, "Per-token reward").
        values: [N, T+1] critic values V(s_0..s_T) from the rollout (V_old). The value after a
            row's last real token is replaced by 0 (see the module docstring), so column T and
            every padded column are never read.
        mask: [N, T], 1 on real response tokens, each row's real tokens first (right padding).
        gamma: discount γ.
        lam: GAE λ.

    Returns:
        ``(advantages, returns)``, both [N, T] and 0 on padding, with
        ``returns = advantages + values[:, :T]``. With γ = λ = 1 these are seed 001's
        ``return[t] = Σ_{k≥t} r_k`` and ``a[t] = return[t] − V(s_t)``.
    """
    n, t_max = rewards.shape
    if values.shape != (n, t_max + 1) or mask.shape != (n, t_max):
        raise ValueError(
            f"expected rewards [N, T], values [N, T+1], mask [N, T]; got {tuple(rewards.shape)}, "
            f"{tuple(values.shape)}, {tuple(mask.shape)}"
        )
    mask = mask.bool()
    # A successor state exists (and is bootstrapped) only where the next token is real.
    has_next = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)
    next_values = torch.where(has_next, values[:, 1:], 0)
    # SPEC.md section 2, GAE: δ_t = r_t + γ·V(s_{t+1}) − V(s_t), with V = 0 after the last token.
    deltas = torch.where(mask, rewards + gamma * next_values - values[:, :t_max], 0)

    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[:, 0])
    for t in reversed(range(t_max)):
        # SPEC.md section 2, GAE: A_t = δ_t + γλ·A_{t+1}, the sum cut at the episode's end.
        running = deltas[:, t] + gamma * lam * torch.where(has_next[:, t], running, 0)
        advantages[:, t] = running
    advantages = torch.where(mask, advantages, 0)
    # SPEC.md section 2: return_t = A_t + V_old(s_t) (seed 001: a[t] = return[t] − V(s_t)).
    returns = torch.where(mask, advantages + values[:, :t_max], 0)
    return advantages, returns

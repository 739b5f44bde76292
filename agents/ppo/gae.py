"""Generalised advantage estimates and returns for padded batches of LLM episodes.

A batch holds N episodes, one per row, right-padded to T response tokens; ``mask`` is 1 on real
tokens. Every episode in the batch is over: it ended at EOS (termination) or at
``max_new_tokens`` (truncation), and in LLM RLHF both mean the response is finished and scored,
so the value after a row's last real token is 0 (no bootstrap).

References: docs/formulation.md eqs. 7-9; Schulman et al. 2016, "High-Dimensional Continuous
Control Using Generalized Advantage Estimation"; TRL's original ``compute_advantages`` loop.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and value targets for a right-padded batch.

    Args:
        rewards: [N, T] per-token rewards r_t (docs/formulation.md eq. 2).
        values: [N, T+1] critic values V(s_0..s_T) from the rollout (V_old). The value after a
            row's last real token is replaced by 0 (see the module docstring), so column T and
            every padded column are never read.
        mask: [N, T], 1 on real response tokens, each row's real tokens first (right padding).
        gamma: discount γ.
        lam: GAE λ.

    Returns:
        ``(advantages, returns)``, both [N, T] and 0 on padding, with
        ``returns = advantages + values[:, :T]``. With γ = λ = 1 they are
        return_t = Σ_{k≥t} r_k and A_t = return_t − V(s_t).
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
    # docs/formulation.md eq. 7: δ_t = r_t + γ·V(s_{t+1}) − V(s_t), V = 0 after the last token.
    deltas = torch.where(mask, rewards + gamma * next_values - values[:, :t_max], 0)

    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[:, 0])
    for t in reversed(range(t_max)):
        # eq. 8: A_t = δ_t + γλ·A_{t+1}, the sum cut at the episode's end.
        running = deltas[:, t] + gamma * lam * torch.where(has_next[:, t], running, 0)
        advantages[:, t] = running
    advantages = torch.where(mask, advantages, 0)
    # eq. 9: return_t = A_t + V_old(s_t).
    returns = torch.where(mask, advantages + values[:, :t_max], 0)
    return advantages, returns

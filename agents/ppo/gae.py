"""Generalised advantage estimates and returns for padded batches of LLM episodes.

A batch holds N episodes, one per row, right-padded to T response tokens; ``mask`` is 1 on real
tokens. Every episode in the batch is over: it ended at EOS (termination) or at
``max_new_tokens`` (truncation), and in LLM RLHF both mean the response is finished and scored,
so the value after a row's last real token is 0 (no bootstrap).

In a multi-turn episode (docs/formulation.md eq. 44) the mask has holes: the environment's
tokens sit between the agent's turns and are no time step of the agent's MDP. The recursion
then runs over each row's agent tokens in order, the environment's tokens being part of a
transition: δ_t = r_t + γ·V(s_{t'}) − V(s_t) with t' the row's next agent token, and the
environment's tokens get advantage and return 0.

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
        mask: [N, T], 1 on the agent's response tokens: each row's first tokens (right
            padding), or with holes at a multi-turn environment's tokens (eq. 44).
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
    # eq. 44: gather each row's agent tokens to its front (a stable sort keeps their order), run
    # the recursion there, and scatter the results back to the tokens' columns.
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    advantages, returns = _contiguous_gae(
        rewards.gather(1, order),
        values[:, :t_max].gather(1, order),
        mask.gather(1, order),
        gamma,
        lam,
    )
    back = torch.zeros_like(advantages)
    return back.scatter(1, order, advantages), torch.zeros_like(returns).scatter(1, order, returns)


def _contiguous_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gae` on rows whose real tokens come first; ``values`` is [N, T] here."""
    t_max = rewards.shape[1]
    values = torch.cat([values, values.new_zeros(len(values), 1)], dim=1)
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

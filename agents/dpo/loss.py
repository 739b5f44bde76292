"""The DPO loss (and its IPO and conservative variants) over per-sequence log-probs, and the KL
term online DPO adds to its loss (docs/formulation.md eqs. 22-27).

With the implicit reward r(x, y) = β·(log π_θ(y|x) − log π_ref(y|x)),

    L_DPO = −mean log σ( r(x, y_w) − r(x, y_l) )

Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model"; conservative DPO (label smoothing) from Mitchell 2023, "A note on DPO with noisy
preferences"; IPO from Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning
from Human Preferences". Loss and statistic names follow TRL's ``DPOTrainer``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf_env.envs.kl import kl_estimate

# Whether each loss type expects per-token-averaged sequence log-probs. DPO uses the summed
# log π(y|x) (eq. 22). IPO regresses the log-ratio difference h onto a fixed target 1/(2β);
# with summed log-probs that target is a per-sequence margin, so the longer the responses the
# less it asks of each token. We follow TRL and average over each response's real tokens for IPO
# (eq. 25), which makes the target a per-token margin whatever the lengths.
AVERAGE_LOGPROBS = {"sigmoid": False, "ipo": True}


def kl_penalty(
    token_logps: torch.Tensor, ref_token_logps: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Σ_t ½·(log π_θ(y_t|·) − log π_ref(y_t|·))² of each response: online DPO's KL term
    (docs/formulation.md eq. 27, the k2 estimator of eq. 4 summed over the real tokens).

    On tokens sampled from π_θ its gradient, d_t·∇log π_θ(y_t|·) with d_t the log-ratio, is a
    single-sample estimate of ∇KL(π_θ ‖ π_ref) at that token's state; k1's gradient (∇log π_θ
    alone) would only push every sampled token down, and k3's estimates the gradient of
    KL(π_ref ‖ π_θ) instead (eq. 5). DPO's own β does not hold the KL of a policy that keeps
    sampling new pairs, hence this term, weighted by the KL controller's β.

    Args:
        token_logps: [N, T] log π_θ of each response token (carries gradients).
        ref_token_logps: [N, T] log π_ref of the same tokens (detached here).
        mask: [N, T], 1 on real response tokens.

    Returns:
        [N] float32, ≥ 0.
    """
    if not token_logps.shape == ref_token_logps.shape == mask.shape:
        raise ValueError(
            f"expected three [N, T] tensors; got {tuple(token_logps.shape)}, "
            f"{tuple(ref_token_logps.shape)}, {tuple(mask.shape)}"
        )
    per_token = kl_estimate(token_logps.float(), ref_token_logps.detach().float(), "k2")
    return torch.where(mask.bool(), per_token, 0).sum(-1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    weights: torch.Tensor | None = None,
    denominator: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DPO loss over N preference pairs (docs/formulation.md eqs. 23-25).

    Args:
        policy_chosen: [N] log π_θ(y_w|x) of the preferred responses (carries gradients).
        policy_rejected: [N] log π_θ(y_l|x) of the dispreferred responses (carries gradients).
        ref_chosen: [N] log π_ref(y_w|x); the reference is frozen, so it is detached here.
        ref_rejected: [N] log π_ref(y_l|x).
        beta: β > 0, the KL strength: the implicit reward's scale (DPO) or, through the target
            1/(2β), the margin (IPO).
        loss_type: ``"sigmoid"`` (DPO) or ``"ipo"``. See :data:`AVERAGE_LOGPROBS` for which
            log-probs (summed or per-token averaged) each expects.
        label_smoothing: ε in [0, 0.5), the assumed probability that a label is flipped
            (conservative DPO); only for ``"sigmoid"``. 0 is plain DPO.
        weights: [N] weight of each pair (default 1); a 0 drops a pair whose responses scored
            the same, keeping the batch's shape.
        denominator: what the weighted sum of the pairs' losses is divided by (default: the
            sum of the weights, a plain weighted mean; several learners pass the global one).

    Returns:
        ``(loss, stats)``; ``stats`` holds detached scalars over the pairs with a weight:
        ``loss``, ``rewards/chosen`` and ``rewards/rejected`` (mean implicit reward
        β·(log π_θ − log π_ref)), ``rewards/accuracy`` (share of pairs whose chosen reward is
        strictly higher; 0 while π_θ = π_ref), ``rewards/margin`` (mean chosen − rejected
        reward), ``logps/chosen`` and ``logps/rejected`` (mean log π_θ).
    """
    inputs = {
        "policy_chosen": policy_chosen,
        "policy_rejected": policy_rejected,
        "ref_chosen": ref_chosen,
        "ref_rejected": ref_rejected,
    }
    for name, tensor in inputs.items():
        if tensor.ndim != 1 or tensor.shape != policy_chosen.shape or len(tensor) == 0:
            shapes = {k: tuple(v.shape) for k, v in inputs.items()}
            raise ValueError(f"expected four [N] tensors with N ≥ 1; {name} breaks it: {shapes}")
    if loss_type not in AVERAGE_LOGPROBS:
        raise ValueError(
            f"unknown DPO loss_type {loss_type!r}; choose one of {sorted(AVERAGE_LOGPROBS)}"
        )
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")
    if label_smoothing and loss_type != "sigmoid":
        raise ValueError(f"label_smoothing applies to loss_type 'sigmoid' only, not {loss_type!r}")
    weights = torch.ones_like(policy_chosen) if weights is None else weights.float()
    if denominator is None:
        denominator = weights.sum().clamp(min=1e-8)

    chosen_logratio = policy_chosen - ref_chosen.detach()  # log π_θ(y_w|x) − log π_ref(y_w|x)
    rejected_logratio = policy_rejected - ref_rejected.detach()
    # h = log [π_θ(y_w|x)·π_ref(y_l|x)] / [π_ref(y_w|x)·π_θ(y_l|x)], the log-ratio difference.
    h = chosen_logratio - rejected_logratio
    if loss_type == "sigmoid":
        # eq. 23: L = −mean log σ(β·h); eq. 24 (cDPO, ε = label_smoothing): the expectation
        # over a label flipped with probability ε, −(1−ε)·log σ(β·h) − ε·log σ(−β·h).
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(
            -beta * h
        )
    else:
        # eq. 25 (IPO): L = mean (h − 1/(2τ))², with the paper's regulariser τ = β.
        losses = (h - 1 / (2 * beta)) ** 2
    loss = (weights * losses).sum() / denominator

    with torch.no_grad():
        kept = weights > 0
        chosen_rewards, rejected_rewards = beta * chosen_logratio, beta * rejected_logratio

        def mean(x: torch.Tensor) -> torch.Tensor:
            return x[kept].mean() if kept.any() else x.new_tensor(float("nan"))

        stats = {
            "loss": mean(losses),
            "rewards/chosen": mean(chosen_rewards),
            "rewards/rejected": mean(rejected_rewards),
            "rewards/accuracy": mean((chosen_rewards > rejected_rewards).float()),
            "rewards/margin": mean(chosen_rewards - rejected_rewards),
            "logps/chosen": mean(policy_chosen.detach()),
            "logps/rejected": mean(policy_rejected.detach()),
        }
    return loss, stats

"""The DPO loss (and its IPO variant) over per-sequence log-probs, those log-probs, and the
KL term online DPO adds to its loss.

Implements SPEC.md section 2 ("DPO", seed 004): with the implicit reward
r(x, y) = β·(log π_θ(y|x) − log π_ref(y|x)),

    L_DPO = −mean log σ( r(x, y_w) − r(x, y_l) )

Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model"; conservative DPO (label smoothing) from Mitchell 2023, "A note on DPO with noisy
preferences"; IPO from Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning
from Human Preferences". Loss and statistic names follow TRL's ``DPOTrainer``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf_env.kl import kl_estimate

# Whether each loss type expects per-token-averaged sequence log-probs (the ``average`` argument
# of :func:`sequence_logprobs`). DPO uses the summed log π(y|x) of SPEC.md section 2. IPO
# regresses the log-ratio difference h onto a fixed target 1/(2β); with summed log-probs that
# target is a per-sequence margin, so the longer the responses the less it asks of each token.
# We follow TRL and average over each response's real tokens for IPO, which makes the target a
# per-token margin, whatever the lengths. (The paper writes h with whole-sequence probabilities;
# ``average=False`` gives that.)
AVERAGE_LOGPROBS = {"sigmoid": False, "ipo": True}


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log π(y_t|x, y_<t) of every response token; 0 on padded slots.

    Args:
        logits: [N, T, V], the logits at the positions that predict each response token (for a
            causal LM over :func:`agents.dpo.rows.preference_rows`, ``logits[:, P-1 : -1]``).
        tokens: [N, T] response token ids; padded slots may hold anything.
        mask: [N, T], 1 on real response tokens.

    Returns:
        [N, T] float32. The log-softmax runs in float32, so bf16 logits lose nothing.
    """
    if logits.shape[:-1] != tokens.shape or tokens.shape != mask.shape:
        raise ValueError(
            f"expected logits [N, T, V], tokens [N, T], mask [N, T]; got {tuple(logits.shape)}, "
            f"{tuple(tokens.shape)}, {tuple(mask.shape)}"
        )
    mask = mask.bool()
    counts = mask.sum(-1)
    if (counts == 0).any():
        rows = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"rows {rows} have no real response tokens (mask is all zero)")
    logits = logits.float()
    tokens = torch.where(mask, tokens.long(), 0)  # padded ids may be out of range (e.g. -100)
    # log π(y_t|·) = logit[y_t] − logsumexp(logits): the same as log_softmax(...).gather(...)
    # without keeping another [N, T, V] tensor for the backward.
    token_logps = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return torch.where(mask, token_logps, 0)


def sequence_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, average: bool = False
) -> torch.Tensor:
    """log π(y|x) = Σ_t log π(y_t|x, y_<t) of each response, over its real tokens.

    Takes the arguments of :func:`token_logprobs`; ``average`` divides each row's sum by its
    number of real tokens (see :data:`AVERAGE_LOGPROBS`). Returns [N] float32.
    """
    return summed_logprobs(token_logprobs(logits, tokens, mask), mask, average)


def summed_logprobs(token_logps: torch.Tensor, mask: torch.Tensor,
                    average: bool = False) -> torch.Tensor:
    """[N] sums (or, with ``average``, means) of [N, T] per-token log-probs over the mask."""
    total = torch.where(mask.bool(), token_logps, 0).sum(-1)
    return total / mask.bool().sum(-1) if average else total


def kl_penalty(
    token_logps: torch.Tensor, ref_token_logps: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Σ_t ½·(log π_θ(y_t|·) − log π_ref(y_t|·))² of each response: online DPO's KL term.

    The k2 estimator of SPEC.md section 2, summed over the real tokens like the environment's
    per-token KL penalty. On tokens sampled from π_θ its gradient, d_t·∇log π_θ(y_t|·) with
    d_t the log-ratio, is a single-sample estimate of ∇KL(π_θ ‖ π_ref) at that token's state;
    k1's gradient (∇log π_θ alone) would only push every sampled token down, and k3's,
    (1 − π_ref/π_θ)·∇log π_θ, estimates the gradient of KL(π_ref ‖ π_θ) instead. Online DPO adds β·mean(kl_penalty) to its loss, β from the KL
    controller, because DPO's own β does not hold the KL of a policy that keeps sampling new
    pairs (README, "Online DPO").

    Args:
        token_logps: [N, T] log π_θ of each response token (carries gradients).
        ref_token_logps: [N, T] log π_ref of the same tokens (detached here).
        mask: [N, T], 1 on real response tokens.

    Returns:
        [N] float32, ≥ 0.
    """
    if not token_logps.shape == ref_token_logps.shape == mask.shape:
        raise ValueError(f"expected three [N, T] tensors; got {tuple(token_logps.shape)}, "
                         f"{tuple(ref_token_logps.shape)}, {tuple(mask.shape)}")
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
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DPO loss over N preference pairs (SPEC.md section 2, seed 004), or IPO.

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

    Returns:
        ``(loss, stats)``; ``stats`` holds detached scalars: ``loss``, ``rewards/chosen`` and
        ``rewards/rejected`` (mean implicit reward β·(log π_θ − log π_ref)), ``rewards/accuracy``
        (share of pairs whose chosen reward is strictly higher; 0 while π_θ = π_ref),
        ``rewards/margin`` (mean chosen − rejected reward), ``logps/chosen`` and
        ``logps/rejected`` (mean log π_θ).
    """
    inputs = {"policy_chosen": policy_chosen, "policy_rejected": policy_rejected,
              "ref_chosen": ref_chosen, "ref_rejected": ref_rejected}
    for name, tensor in inputs.items():
        if tensor.ndim != 1 or tensor.shape != policy_chosen.shape or len(tensor) == 0:
            shapes = {k: tuple(v.shape) for k, v in inputs.items()}
            raise ValueError(f"expected four [N] tensors with N ≥ 1; {name} breaks it: {shapes}")
    if loss_type not in AVERAGE_LOGPROBS:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; choose one of "
                         f"{sorted(AVERAGE_LOGPROBS)}")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")
    if label_smoothing and loss_type != "sigmoid":
        raise ValueError(f"label_smoothing applies to loss_type 'sigmoid' only, not {loss_type!r}")

    chosen_logratio = policy_chosen - ref_chosen.detach()  # log π_θ(y_w|x) − log π_ref(y_w|x)
    rejected_logratio = policy_rejected - ref_rejected.detach()
    # h = log [π_θ(y_w|x)·π_ref(y_l|x)] / [π_ref(y_w|x)·π_θ(y_l|x)], the log-ratio difference.
    h = chosen_logratio - rejected_logratio
    if loss_type == "sigmoid":
        # SPEC.md section 2, DPO: L = −mean log σ(β·h). cDPO (ε = label_smoothing) takes the
        # expectation over a label flipped with probability ε: −(1−ε)·log σ(β·h) − ε·log σ(−β·h).
        losses = (-(1 - label_smoothing) * F.logsigmoid(beta * h)
                  - label_smoothing * F.logsigmoid(-beta * h))
    else:
        # IPO (Azar et al. 2023): L = mean (h − 1/(2τ))², with the paper's regulariser τ = β.
        losses = (h - 1 / (2 * beta)) ** 2
    loss = losses.mean()

    with torch.no_grad():
        chosen_rewards, rejected_rewards = beta * chosen_logratio, beta * rejected_logratio
        stats = {
            "loss": loss.detach(),
            "rewards/chosen": chosen_rewards.mean(),
            "rewards/rejected": rejected_rewards.mean(),
            "rewards/accuracy": (chosen_rewards > rejected_rewards).float().mean(),
            "rewards/margin": (chosen_rewards - rejected_rewards).mean(),
            "logps/chosen": policy_chosen.detach().mean(),
            "logps/rejected": policy_rejected.detach().mean(),
        }
    return loss, stats

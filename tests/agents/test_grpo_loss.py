"""GRPO-family advantages and losses against hand computations (docs/formulation.md eqs. 28-34)."""

import math

import pytest
import torch

from agents.grpo.advantages import group_advantages
from agents.grpo.loss import grpo_loss


def test_advantages_by_hand():
    scores = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.5, 0.5, 0.5, 0.5]])
    std = math.sqrt(14 / 3)  # deviations -2, -1, 0, 3: squares 14, sample variance 14/3
    want = torch.tensor([[-2.0, -1.0, 0.0, 3.0], [0.0] * 4])
    torch.testing.assert_close(
        group_advantages(scores, "grpo"), want / torch.tensor([[std + 1e-4], [1.0]])
    )
    torch.testing.assert_close(group_advantages(scores, "dr_grpo"), want)
    # leave-one-out: 1 - 11/3, 2 - 10/3, 3 - 9/3, 6 - 6/3 (= k/(k-1) x the centred scores)
    torch.testing.assert_close(group_advantages(scores, "rloo"), want * 4 / 3)
    with pytest.raises(ValueError, match="unknown advantage"):
        group_advantages(scores, "ppo")
    with pytest.raises(ValueError, match=r"\[groups, k >= 2\]"):
        group_advantages(scores[:, :1])


def batch():
    """Two responses: ratios (1.5, 0.5) with A = 1 and (1.1, padding) with A = -2."""
    logprobs = torch.tensor([[math.log(1.5), math.log(0.5)], [math.log(1.1), 7.0]])
    old = torch.zeros(2, 2)
    old[1, 1] = -3.0  # padding: garbage that must not count
    mask = torch.tensor([[True, True], [True, False]])
    return logprobs, old, torch.tensor([1.0, -2.0]), mask


def test_token_sequence_and_constant_aggregation_by_hand():
    # min(ρA, clip(ρ, 0.8, 1.28)A): 1.28 (clipped above), 0.5, -2.2; sum -0.42 over 3 tokens
    loss, stats = grpo_loss(*batch(), clip_low=0.2, clip_high=0.28, aggregation="token")
    assert loss.item() == pytest.approx(0.42 / 3)
    assert stats["clip_high_fraction"].item() == pytest.approx(1 / 3)
    assert stats["clip_low_fraction"].item() == 0.0  # ρ = 0.5 < 0.8 but A > 0: not cut
    assert stats["ratio_mean"].item() == pytest.approx((1.5 + 0.5 + 1.1) / 3)
    # per sequence: token means 0.89 and -2.2, averaged over 2 sequences
    loss, _ = grpo_loss(*batch(), clip_low=0.2, clip_high=0.28, aggregation="sequence")
    assert loss.item() == pytest.approx(-(0.89 - 2.2) / 2)
    # constant: the token sum over 2 sequences x L_max = 4
    loss, _ = grpo_loss(
        *batch(), clip_low=0.2, clip_high=0.28, aggregation="constant", max_tokens=4
    )
    assert loss.item() == pytest.approx(0.42 / 8)
    loss, _ = grpo_loss(*batch(), aggregation="token", denominator=6.0)  # a global count
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 2.2) / 6)


def test_gspo_sequence_ratio_by_hand():
    # s_0 = exp(mean(log 1.5, log 0.5)) = sqrt(0.75), inside [0.8, 1.28]; s_1 = 1.1 with A = -2
    loss, stats = grpo_loss(*batch(), clip_low=0.2, clip_high=0.28, sequence_ratio=True)
    assert loss.item() == pytest.approx(-(math.sqrt(0.75) - 2.2) / 2)
    assert stats["ratio_mean"].item() == pytest.approx((math.sqrt(0.75) + 1.1) / 2)


def test_k3_term_in_the_loss_by_hand():
    logprobs, old, advantages, mask = batch()
    ref = torch.zeros(2, 2)
    # k3 = π_ref/π_θ − log(π_ref/π_θ) − 1 for π_θ/π_ref = 1.5, 0.5, 1.1
    k3 = [1 / r + math.log(r) - 1 for r in (1.5, 0.5, 1.1)]
    plain, _ = grpo_loss(logprobs, old, advantages, mask, aggregation="token")
    loss, stats = grpo_loss(
        logprobs, old, advantages, mask, aggregation="token", ref_logprobs=ref, kl_coef=0.04
    )
    assert stats["kl"].item() == pytest.approx(sum(k3) / 3)
    assert loss.item() == pytest.approx(plain.item() + 0.04 * sum(k3) / 3)


def test_gradient_flows_only_through_real_tokens_and_unclipped_terms():
    logprobs, old, advantages, mask = batch()
    logprobs.requires_grad_(True)
    grpo_loss(logprobs, old, advantages, mask, clip_low=0.2, clip_high=0.28)[0].backward()
    # d/dlogπ of −ρA/3 is −ρA/3 where unclipped; 0 where clipped (token 0) and on padding
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, -0.5 / 3], [2.2 / 3, 0.0]]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown aggregation"):
        grpo_loss(*batch(), aggregation="mean")
    with pytest.raises(ValueError, match="needs max_tokens"):
        grpo_loss(*batch(), aggregation="constant")
    logprobs, old, advantages, mask = batch()
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(logprobs, old, advantages[:1], mask)

"""Rollout correction against a deliberately perturbed sampler (docs/formulation.md eqs. 36-38):
the corrected policy gradient is close to the true on-policy gradient, the uncorrected one is
not, for the PPO and the GRPO loss alike.

A one-step problem whose exact policy gradient is known: a softmax policy π over 8 tokens with a
fixed advantage per token, ∇J = Σ_a π(a) A(a) ∇log π(a). The tokens come from a perturbed
sampler π' (as vLLM or bf16 sampling would give, exaggerated), which reports its own log-probs.
"""

import pytest
import torch

from agents.core.correction import importance_weights
from agents.grpo.loss import grpo_loss
from agents.ppo.loss import ppo_loss

V, N = 8, 40_000


def setting():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(V, generator=gen)
    sampler_logits = logits + 0.8 * torch.randn(V, generator=gen)  # the perturbed sampler
    advantage = torch.randn(V, generator=gen)
    tokens = torch.multinomial(sampler_logits.softmax(-1), N, replacement=True, generator=gen)
    return logits, sampler_logits, advantage, tokens


def exact_gradient(logits, advantage) -> torch.Tensor:
    theta = logits.clone().requires_grad_(True)
    (theta.softmax(-1) * advantage).sum().backward()  # J = Σ_a π(a) A(a)
    return theta.grad


def estimated_gradient(loss_name: str, correction: str) -> torch.Tensor:
    logits, sampler_logits, advantage, tokens = setting()
    theta = logits.clone().requires_grad_(True)
    logprobs = theta.log_softmax(-1)[tokens][:, None]  # [N, 1]: one-token responses
    learner_old = logits.log_softmax(-1)[tokens][:, None]
    sampler = sampler_logits.log_softmax(-1)[tokens][:, None]
    mask = torch.ones(N, 1, dtype=torch.bool)
    weights, _ = importance_weights(learner_old, sampler, mask, correction, cap=10.0)
    if loss_name == "ppo":
        zeros = torch.zeros(N, 1)
        loss, _ = ppo_loss(
            logprobs,
            learner_old,
            advantage[tokens][:, None],
            zeros,
            zeros,
            zeros,
            mask,
            None,
            vf_coef=0.0,
            weights=weights,
        )
    else:
        loss, _ = grpo_loss(logprobs, learner_old, advantage[tokens], mask, weights=weights)
    (-loss).backward()  # the surrogate's gradient at π_θ = π_learner_old
    return theta.grad


def relative_error(estimate, exact) -> float:
    return float((estimate - exact).norm() / exact.norm())


@pytest.mark.parametrize("loss_name", ["ppo", "grpo"])
def test_correction_recovers_the_on_policy_gradient(loss_name):
    exact = exact_gradient(*setting()[0:1], setting()[2])
    uncorrected = relative_error(estimated_gradient(loss_name, "none"), exact)
    corrected = relative_error(estimated_gradient(loss_name, "tis"), exact)
    masked = relative_error(estimated_gradient(loss_name, "mask_token"), exact)
    assert corrected < 0.1 < 0.3 < uncorrected, (corrected, uncorrected)
    assert masked > corrected  # masking drops tokens instead of reweighting them


def test_weights_and_metrics_by_hand():
    learner = torch.tensor([[0.0, -1.0, -2.0], [-0.5, 0.0, 0.0]])
    sampler = torch.tensor([[0.0, -2.0, -1.0], [-0.5, -9.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    # w = exp(learner − sampler) on real tokens: 1, e, 1/e; 1
    w = torch.tensor([[1.0, 2.718281828, 0.367879441], [1.0, 1.0, 1.0]])
    tis, stats = importance_weights(learner, sampler, mask, "tis", cap=2.0)
    torch.testing.assert_close(tis, w.clamp(max=2.0))
    assert stats["is_ratio_max"].item() == pytest.approx(2.718281828)
    assert stats["is_ratio_mean"].item() == pytest.approx((1 + 2.718281828 + 0.367879441 + 1) / 4)
    assert stats["logprob_abs_diff"].item() == pytest.approx(0.5)
    masked, stats = importance_weights(learner, sampler, mask, "mask_token", cap=2.0)
    torch.testing.assert_close(masked, torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    assert stats["masked_fraction"].item() == pytest.approx(0.5)
    # per sequence: row 0's mean log-weight is 0 (kept), row 1's is 0 (kept)
    sequences, _ = importance_weights(learner, sampler, mask, "mask_sequence", cap=2.0)
    assert sequences.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    with pytest.raises(ValueError, match="unknown rollout correction"):
        importance_weights(learner, sampler, mask, "clip", cap=2.0)

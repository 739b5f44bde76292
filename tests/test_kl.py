"""The KL estimators, the per-token reward and the KL per token against hand computations
(docs/formulation.md eqs. 1-6)."""

import math

import pytest
import torch

from rlhf_env.envs.kl import kl_estimate, kl_per_token, token_reward


def test_estimators_by_hand():
    logprob, ref = -1.2, -2.0  # log-ratio d = 0.8
    assert kl_estimate(logprob, ref, "k1") == pytest.approx(0.8)
    assert kl_estimate(logprob, ref, "k2") == pytest.approx(0.5 * 0.64)
    rho = math.exp(-2.0) / math.exp(-1.2)  # π_ref / π_old
    assert kl_estimate(logprob, ref, "k3") == pytest.approx((rho - 1) - math.log(rho))


def test_k2_and_k3_are_non_negative_and_zero_at_equality():
    for d in (-3.0, -0.1, 0.0, 0.2, 4.0):
        assert kl_estimate(d - 1.0, -1.0, "k2") >= 0
        assert kl_estimate(d - 1.0, -1.0, "k3") >= 0
    for estimator in ("k1", "k2", "k3"):
        assert kl_estimate(-1.5, -1.5, estimator) == 0.0


def test_estimators_take_tensors_elementwise():
    logprobs, refs = torch.tensor([-1.2, -0.5, -3.0]), torch.tensor([-2.0, -0.5, -1.0])
    for estimator in ("k1", "k2", "k3"):
        expected = [kl_estimate(float(a), float(b), estimator) for a, b in zip(logprobs, refs)]
        torch.testing.assert_close(kl_estimate(logprobs, refs, estimator), torch.tensor(expected))


def test_token_reward_adds_score_only_when_given():
    assert token_reward(0.8, 0.1) == pytest.approx(-0.08)
    assert token_reward(0.8, 0.1, score=0.5) == pytest.approx(0.42)


def test_kl_per_token_weights_episodes_by_their_length():
    # episodes of 1 and 3 tokens with summed KL 0.4 and 0.2: (0.4 + 0.2) / 4 = 0.15, not the
    # mean of per-episode averages ((0.4 / 1 + 0.2 / 3) / 2 = 0.2333...)
    assert kl_per_token([0.4, 0.2], [1, 3]) == pytest.approx(0.15)
    assert kl_per_token(torch.tensor([0.4, 0.2]), [1, 3]) == pytest.approx(0.15)
    assert kl_per_token([], []) == 0.0  # no tokens: no KL


def test_unknown_estimator():
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(-1.0, -1.0, "k4")

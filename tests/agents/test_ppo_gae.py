"""GAE, returns and whitening against hand computations (docs/formulation.md eqs. 7-10)."""

import math

import pytest
import torch

from agents.core.masked import masked_mean, masked_var, whiten
from agents.ppo.gae import gae

PAD = 99.0  # garbage in padded slots: must never reach a result


def two_row_batch():
    """Row 0 has 3 real tokens, row 1 has 2 and one pad; V(s_T) / padded values are garbage."""
    rewards = torch.tensor([[0.1, -0.2, 1.0], [0.5, 2.0, PAD]])
    values = torch.tensor([[0.5, 0.4, 0.3, PAD], [1.0, 0.5, PAD, PAD]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return rewards, values, mask


def test_gae_by_hand():
    rewards, values, mask = two_row_batch()
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)  # γλ = 0.72
    # Row 0 (V after the last token is 0):
    #   δ2 = 1.0 + 0.9·0   − 0.3 =  0.7
    #   δ1 = −0.2 + 0.9·0.3 − 0.4 = −0.33
    #   δ0 = 0.1 + 0.9·0.4 − 0.5 = −0.04
    #   A2 = 0.7;  A1 = −0.33 + 0.72·0.7 = 0.174;  A0 = −0.04 + 0.72·0.174 = 0.08528
    #   R = A + V = [0.58528, 0.574, 1.0]
    # Row 1 (last real token at t=1):
    #   δ1 = 2.0 + 0.9·0 − 0.5 = 1.5;  δ0 = 0.5 + 0.9·0.5 − 1.0 = −0.05
    #   A1 = 1.5;  A0 = −0.05 + 0.72·1.5 = 1.03;  R = [2.03, 2.0];  padding 0
    expected_adv = torch.tensor([[0.08528, 0.174, 0.7], [1.03, 1.5, 0.0]])
    expected_ret = torch.tensor([[0.58528, 0.574, 1.0], [2.03, 2.0, 0.0]])
    torch.testing.assert_close(advantages, expected_adv)
    torch.testing.assert_close(returns, expected_ret)


def test_no_bootstrap_after_last_token():
    """Termination or truncation alike: the value after the last real token is never used."""
    rewards, values, mask = two_row_batch()
    base = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    values[0, 3], values[1, 2] = -1e6, 1e6  # V(s_T) of the full row, V after row 1's end
    values[1, 3] = float("nan")
    rewards[1, 2] = float("nan")
    for got, want in zip(gae(rewards, values, mask, gamma=0.9, lam=0.8), base):
        torch.testing.assert_close(got, want)


def test_gamma_lambda_one_gives_seed_001_returns():
    """γ = λ = 1: return[t] = Σ_{k≥t} r_k and a[t] = return[t] − V(s_t) (eqs. 8-9)."""
    gen = torch.Generator().manual_seed(0)
    rewards = torch.randn(4, 6, generator=gen)
    values = torch.randn(4, 7, generator=gen)
    lengths = [6, 1, 4, 3]
    mask = torch.tensor([[t < n for t in range(6)] for n in lengths])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    for i, n in enumerate(lengths):
        for t in range(6):
            if t < n:
                want = sum(rewards[i, k].item() for k in range(t, n))
                assert returns[i, t].item() == pytest.approx(want, abs=1e-5)
                want_adv = want - values[i, t].item()
                assert advantages[i, t].item() == pytest.approx(want_adv, abs=1e-5)
            else:
                assert returns[i, t] == 0 and advantages[i, t] == 0


def test_lambda_zero_is_one_step_td():
    rewards, values, mask = two_row_batch()
    advantages, _ = gae(rewards, values, mask, gamma=0.9, lam=0.0)
    torch.testing.assert_close(advantages, torch.tensor([[-0.04, -0.33, 0.7], [-0.05, 1.5, 0.0]]))


def test_gae_shape_errors():
    rewards, values, mask = two_row_batch()
    with pytest.raises(ValueError, match=r"values \[N, T\+1\]"):
        gae(rewards, values[:, :3], mask, gamma=1.0, lam=1.0)


def test_masked_statistics_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, PAD, float("nan")]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.5)
    # deviations −1.5, −0.5, 0.5, 1.5 → squares sum to 5
    assert masked_var(x, mask).item() == pytest.approx(5 / 3)
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(5 / 4)
    with pytest.raises(ValueError, match="no real tokens"):
        masked_mean(x, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(x, torch.tensor([[1, 0, 0], [0, 0, 0]]))


def test_whiten_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, PAD, PAD]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    std = math.sqrt(5 / 3 + 1e-8)  # mean 2.5, unbiased variance 5/3
    want = torch.tensor([[-1.5 / std, -0.5 / std, 0.5 / std], [1.5 / std, 0.0, 0.0]])
    torch.testing.assert_close(whiten(x, mask), want)


def test_whiten_moments():
    gen = torch.Generator().manual_seed(1)
    x = 3 + 5 * torch.randn(8, 10, generator=gen)
    mask = torch.rand(8, 10, generator=gen) > 0.3
    w = whiten(x, mask)
    assert masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert masked_var(w, mask).item() == pytest.approx(1.0, abs=1e-5)
    assert (w[~mask] == 0).all()


def test_gae_over_agent_tokens_with_environment_tokens_between_by_hand():
    """docs/formulation.md eq. 44: a multi-turn row [a0, a1, e, e, a2] (e: the environment's
    tokens, loss mask 0, garbage rewards and values) is GAE over a0, a1, a2 alone, with the
    value before a2 (past the environment's tokens) bootstrapping a1."""
    rewards = torch.tensor([[0.0, 0.5, PAD, PAD, 1.0, PAD]])
    values = torch.tensor([[0.2, 0.4, PAD, PAD, 0.6, PAD, PAD]])
    mask = torch.tensor([[1, 1, 0, 0, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)  # γλ = 0.72
    #   δ(a2) = 1.0 − 0.6 = 0.4                 A(a2) = 0.4
    #   δ(a1) = 0.5 + 0.9·0.6 − 0.4 = 0.64       A(a1) = 0.64 + 0.72·0.4 = 0.928
    #   δ(a0) = 0.0 + 0.9·0.4 − 0.2 = 0.16       A(a0) = 0.16 + 0.72·0.928 = 0.82816
    #   R = A + V = [1.02816, 1.328, 1.0]; 0 at the environment's tokens and the padding
    torch.testing.assert_close(advantages, torch.tensor([[0.82816, 0.928, 0.0, 0.0, 0.4, 0.0]]))
    torch.testing.assert_close(returns, torch.tensor([[1.02816, 1.328, 0.0, 0.0, 1.0, 0.0]]))

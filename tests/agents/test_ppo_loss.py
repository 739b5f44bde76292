"""PPO loss terms and statistics against hand computations (docs/formulation.md eqs. 11-15)."""

import math

import pytest
import torch

from agents.ppo.loss import ppo_loss

PAD = 123.0  # garbage in padded slots

# Five real tokens (row 0: three, row 1: two and a pad), ε = 0.2:
#   ratio  A    ratio·A   clip(ratio)·A   min     clipped?
#   1.1   +2    2.2       2.2             2.2     inside the range
#   1.5   +1    1.5       1.2             1.2     clip binds (A > 0, ratio > 1+ε)
#   1.5   −1   −1.5      −1.2            −1.5     outside, but min keeps the unclipped term
#   0.5   −2   −1.0      −1.6            −1.6     clip binds (A < 0, ratio < 1−ε)
#   0.5   +2    1.0       1.6             1.0     outside, min keeps the unclipped term
# actor_loss = −(2.2 + 1.2 − 1.5 − 1.6 + 1.0)/5 = −1.3/5 = −0.26
RATIOS = [[1.1, 1.5, 1.5], [0.5, 0.5, 1.0]]
ADVANTAGES = [[2.0, 1.0, -1.0], [-2.0, 2.0, PAD]]
MASK = [[1, 1, 1], [1, 1, 0]]
# Critic: V, old V, return per real token.
VALUES = [[1.0, 2.0, 0.5], [3.0, -1.0, PAD]]
OLD_VALUES = [[0.9, 2.5, 0.0], [3.0, -1.0, PAD]]
RETURNS = [[1.5, 1.0, 0.5], [3.0, 0.0, PAD]]
ENTROPY = [[1.0, 2.0, 3.0], [4.0, 5.0, PAD]]


def batch(requires_grad=False):
    old = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -0.1, PAD]])
    logprobs = (old + torch.tensor(RATIOS).log()).requires_grad_(requires_grad)
    return dict(
        logprobs=logprobs,
        old_logprobs=old,
        advantages=torch.tensor(ADVANTAGES),
        values=torch.tensor(VALUES, requires_grad=requires_grad),
        old_values=torch.tensor(OLD_VALUES),
        returns=torch.tensor(RETURNS),
        mask=torch.tensor(MASK),
        entropy=torch.tensor(ENTROPY),
    )


def test_actor_loss_by_hand():
    _, stats = ppo_loss(**batch())
    assert stats["actor_loss"].item() == pytest.approx(-0.26)


def test_actor_gradient_vanishes_where_the_clip_binds():
    inputs = batch(requires_grad=True)
    loss, _ = ppo_loss(**inputs, vf_coef=0.0)
    loss.backward()
    # d/dlogπ of −ratio·A/5 is −ratio·A/5 where the unclipped term is taken, 0 where the clip is.
    want = torch.tensor([[-1.1 * 2 / 5, 0.0, -1.5 * -1 / 5], [0.0, -0.5 * 2 / 5, 0.0]])
    torch.testing.assert_close(inputs["logprobs"].grad, want)


def test_critic_loss_by_hand():
    # (V − R)² = 0.25, 1, 0, 0, 1 → ½·2.25/5 = 0.225
    _, stats = ppo_loss(**batch())
    assert stats["critic_loss"].item() == pytest.approx(0.225)


def test_critic_loss_with_value_clip_by_hand():
    # c = 0.2: V − V_old = 0.1, −0.5, 0.5, 0, 0 → clipped 0.1, −0.2, 0.2, 0, 0
    # V_clip = 1.0, 2.3, 0.2, 3.0, −1.0; (V_clip − R)² = 0.25, 1.69, 0.09, 0, 1
    # max with (V − R)² = 0.25, 1, 0, 0, 1 → 0.25, 1.69, 0.09, 0, 1 (sum 3.03) → ½·3.03/5 = 0.303
    _, stats = ppo_loss(**batch(), value_clip=0.2)
    assert stats["critic_loss"].item() == pytest.approx(0.303)


def test_total_loss_with_entropy_bonus():
    # mean entropy (1+2+3+4+5)/5 = 3; loss = −0.26 + 0.1·0.225 − 0.01·3 = −0.2675
    loss, stats = ppo_loss(**batch(), ent_coef=0.01)
    assert stats["entropy"].item() == pytest.approx(3.0)
    assert loss.item() == pytest.approx(-0.26 + 0.1 * 0.225 - 0.01 * 3.0)
    loss, _ = ppo_loss(**batch(), vf_coef=0.5, ent_coef=0.0)
    assert loss.item() == pytest.approx(-0.26 + 0.5 * 0.225)


def test_entropy_may_be_none_only_without_bonus():
    inputs = batch()
    inputs["entropy"] = None
    loss, stats = ppo_loss(**inputs)
    assert loss.item() == pytest.approx(-0.26 + 0.1 * 0.225)
    assert "entropy" not in stats
    with pytest.raises(ValueError, match="ent_coef"):
        ppo_loss(**inputs, ent_coef=0.01)


def test_statistics_by_hand():
    _, stats = ppo_loss(**batch())
    # approx_kl, k3 form: mean((ratio − 1) − log ratio) over the five real tokens.
    k3 = [(r - 1) - math.log(r) for r in (1.1, 1.5, 1.5, 0.5, 0.5)]
    assert stats["approx_kl"].item() == pytest.approx(sum(k3) / 5)
    assert stats["clip_fraction"].item() == pytest.approx(4 / 5)  # all but ratio 1.1
    assert stats["ratio_mean"].item() == pytest.approx((1.1 + 1.5 + 1.5 + 0.5 + 0.5) / 5)
    assert stats["value_mean"].item() == pytest.approx((1.0 + 2.0 + 0.5 + 3.0 - 1.0) / 5)
    # R = 1.5, 1, 0.5, 3, 0 (mean 1.2, Var = 5.3/5); R − V = 0.5, −1, 0, 0, 1 (mean 0.1,
    # Var = 2.2/5) → explained variance = 1 − 2.2/5.3
    assert stats["explained_variance"].item() == pytest.approx(1 - 2.2 / 5.3)
    assert all(not v.requires_grad and v.dim() == 0 for v in stats.values())


def test_explained_variance_extremes():
    inputs = batch()
    inputs["values"] = inputs["returns"].clone()
    assert ppo_loss(**inputs)[1]["explained_variance"].item() == pytest.approx(1.0)
    inputs["returns"] = torch.full_like(inputs["returns"], 2.0)
    assert math.isnan(ppo_loss(**inputs)[1]["explained_variance"].item())


def test_padding_changes_nothing():
    """The padded 2×3 batch gives exactly what its five real tokens give as one unpadded row."""
    padded = batch()
    flat = {k: v[padded["mask"].bool()].unsqueeze(0) for k, v in padded.items()}
    for kwargs in ({}, {"value_clip": 0.2, "ent_coef": 0.01}):
        loss_p, stats_p = ppo_loss(**padded, **kwargs)
        loss_f, stats_f = ppo_loss(**flat, **kwargs)
        assert loss_p.item() == pytest.approx(loss_f.item())
        for key in stats_f:
            assert stats_p[key].item() == pytest.approx(stats_f[key].item()), key
    # Even NaN in padded slots stays out of the loss and its gradients.
    nan_padded = batch(requires_grad=True)
    for key in ("advantages", "returns", "entropy", "old_values"):
        nan_padded[key][1, 2] = float("nan")
    loss, _ = ppo_loss(**nan_padded, ent_coef=0.01, value_clip=0.2)
    loss.backward()
    assert loss.item() == pytest.approx(loss_p.item())
    assert nan_padded["logprobs"].grad[1, 2] == 0 and nan_padded["values"].grad[1, 2] == 0


def test_shape_and_argument_errors():
    inputs = batch()
    inputs["returns"] = inputs["returns"][:, :2]
    with pytest.raises(ValueError, match="returns"):
        ppo_loss(**inputs)
    with pytest.raises(ValueError, match="value_clip"):
        ppo_loss(**batch(), value_clip=0.0)


def test_a_given_denominator_replaces_the_token_count():
    """Several learners pass the global token count over the number of learners: the loss is
    then the local token sum divided by it (here, twice the local count: half the loss)."""
    inputs = batch()
    plain, _ = ppo_loss(**inputs)
    tokens = inputs["mask"].sum()
    halved, _ = ppo_loss(**inputs, denominator=2 * tokens)
    torch.testing.assert_close(halved, plain / 2)

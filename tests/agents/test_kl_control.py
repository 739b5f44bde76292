"""The β controllers (docs/formulation.md eqs. 16-17) by hand, and exact resume."""

import math

import pytest
import torch

from agents.core.kl_control import (
    AdaptiveKLController,
    FixedKLController,
    ProportionalKLController,
    make_kl_controller,
)


def test_fixed_never_moves():
    ctl = FixedKLController(0.05)
    for kl in (0.0, 0.01, 10.0, -0.3):  # k1 estimates can be negative
        assert ctl.update(kl, n_steps=64) == 0.05
    assert ctl.beta == 0.05


@pytest.mark.parametrize(
    ("measured", "beta_after"),
    [
        (0.02, 0.05),  # d < 0.1/1.5 = 0.0667 → β/2
        (0.2, 0.2),  # d > 0.1·1.5 = 0.15 → β·2
        (0.1, 0.1),  # in between → unchanged
        (0.07, 0.1),  # just above target/1.5 → unchanged
        (0.15, 0.1),  # exactly target·1.5 is not above it → unchanged
    ],
)
def test_adaptive_ppo_kl_rule(measured, beta_after):
    ctl = AdaptiveKLController(beta=0.1, target=0.1)
    assert ctl.update(measured) == pytest.approx(beta_after)
    assert ctl.beta == pytest.approx(beta_after)


def test_adaptive_sequence_by_hand():
    ctl = AdaptiveKLController(beta=0.4, target=1.0)  # keep band [0.667, 1.5]
    # 0.4 →(d=2: ×2) 0.8 →(d=3: ×2) 1.6 →(d=1: =) 1.6 →(d=0.1: /2) 0.8
    assert [ctl.update(d) for d in (2.0, 3.0, 1.0, 0.1)] == [0.8, 1.6, 1.6, 0.8]


def test_proportional_by_hand():
    ctl = ProportionalKLController(beta=0.2, target=6.0, horizon=10000)
    # d = 6.6: e = clip(6.6/6 − 1 = 0.1) = 0.1; β = 0.2·(1 + 0.1·256/10000) = 0.2·1.00256 = 0.200512
    assert ctl.update(6.6, n_steps=256) == pytest.approx(0.200512)
    # d = 12: e = clip(1.0) = 0.2; β = 0.200512·(1 + 0.2·1000/10000) = 0.200512·1.02 = 0.20452224
    assert ctl.update(12.0, n_steps=1000) == pytest.approx(0.20452224)
    # d = 0: e = clip(−1) = −0.2; β = 0.20452224·(1 − 0.2·5000/10000) = 0.20452224·0.9
    assert ctl.update(0.0, n_steps=5000) == pytest.approx(0.184070016)
    # d = target: e = 0 → unchanged
    assert ctl.update(6.0, n_steps=256) == pytest.approx(0.184070016)


def test_tensor_measurement_is_accepted():
    ctl = AdaptiveKLController(beta=0.1, target=0.1)
    assert ctl.update(torch.tensor(0.5)) == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [
        ("fixed", {"beta": 0.05}),
        ("adaptive", {"beta": 0.05, "target": 0.1}),
        ("proportional", {"beta": 0.05, "target": 0.1, "horizon": 1000}),
    ],
)
def test_state_dict_round_trip_resumes_exactly(kind, kwargs):
    ctl = make_kl_controller(kind, **kwargs)
    for d in (0.3, 0.01, 0.2):
        ctl.update(d, n_steps=7)
    resumed = make_kl_controller(kind, **kwargs)
    resumed.load_state_dict(ctl.state_dict())
    assert resumed.beta == ctl.beta and resumed.state_dict() == ctl.state_dict()
    for d in (0.5, 0.02, 0.1):
        assert resumed.update(d, n_steps=7) == ctl.update(d, n_steps=7)


def test_load_state_dict_rejects_another_kind():
    state = FixedKLController(0.1).state_dict()
    with pytest.raises(ValueError, match="'fixed'.*'adaptive'"):
        AdaptiveKLController(0.1, target=0.1).load_state_dict(state)


def test_factory_errors_and_bad_input():
    with pytest.raises(ValueError, match=r"unknown KL controller 'pid'.*adaptive.*proportional"):
        make_kl_controller("pid", beta=0.1)
    assert isinstance(make_kl_controller("adaptive", beta=0.1, target=1.0), AdaptiveKLController)
    ctl = make_kl_controller("proportional", beta=0.1, target=1.0, horizon=100)
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            ctl.update(bad)
    with pytest.raises(ValueError, match="n_steps"):
        ctl.update(1.0, n_steps=0)
    ctl.update(1.0, n_steps=101)  # more samples than the horizon: fine while β stays > 0
    with pytest.raises(ValueError, match="too large for horizon"):
        ctl.update(1.0, n_steps=500)  # 0.2·500/100 = 100%
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, target=0.0)
    with pytest.raises(ValueError, match="beta"):
        FixedKLController(-1.0)


def test_min_beta_is_a_floor_for_both_adaptive_rules():
    # Measured KL far below target: the PPO-KL rule halves β (0.1 → 0.05 → 0.04 floor), the
    # proportional rule lowers it by 20%·n/horizon (0.1 → 0.08 → 0.064 → 0.06 floor).
    adaptive = AdaptiveKLController(0.1, target=1.0, min_beta=0.04)
    assert [adaptive.update(0.0) for _ in range(3)] == [0.05, 0.04, 0.04]
    proportional = ProportionalKLController(0.1, target=1.0, horizon=10, min_beta=0.06)
    betas = [proportional.update(0.0, n_steps=10) for _ in range(3)]
    assert betas == pytest.approx([0.08, 0.064, 0.06])
    assert proportional.update(2.0, n_steps=10) == pytest.approx(0.072)  # rises above the floor
    with pytest.raises(ValueError, match="min_beta"):
        AdaptiveKLController(0.1, target=1.0, min_beta=0.2)

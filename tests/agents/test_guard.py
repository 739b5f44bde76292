"""Guardrails: the batch signals by hand, the guard's decisions on synthetic records, and a real
run where every batch is a KL spike (updates skipped, β raised, the policy rolled back)."""

import json
from types import SimpleNamespace

import pytest

from agents.core.guard import Guard, GuardConfig, batch_signals
from agents.driver.loop import train


class Episode(SimpleNamespace):
    def __len__(self):
        return self.length


def make(text, kl=0.0, length=4, contributions=None):
    return Episode(
        custom_data={
            "completion": text,
            "kl": kl,
            "contributions": contributions or {"vader": 1.0},
        },
        length=length,
    )


def test_batch_signals_by_hand():
    batch = [
        make("Amazing amazing amazing love", kl=0.4, length=4),
        make("the plot was fine", kl=0.2, length=4),
    ]
    signals = batch_signals(batch)
    # bigrams: (amazing amazing) x2, (amazing love); (the plot), (plot was), (was fine)
    assert signals["guard/distinct_2"] == pytest.approx(5 / 6)
    # repetition: 1 repeat of 3 bigrams, 0 of 3
    assert signals["guard/repetition"] == pytest.approx((1 / 3 + 0) / 2)
    assert signals["guard/kl"] == pytest.approx(0.6 / 8)  # total KL over total tokens (eq. 6)
    assert "guard/dominance" not in signals  # one component
    two = [
        make("a b", contributions={"vader": 0.9, "repetition_penalty": -0.1}),
        make("c d", contributions={"vader": 0.7, "repetition_penalty": -0.1}),
    ]
    assert batch_signals(two)["guard/dominance"] == pytest.approx(1.6 / 1.8)


def test_a_kl_spike_raises_beta_then_rolls_back_after_three_strikes():
    guard = Guard(GuardConfig(strikes=3))
    spike = {"iteration": 1, "guard/kl_spike": 1.0, "guard/kl": 0.9}
    assert guard.check(dict(spike), None) == [
        ("KL spike: 0.900 per token (update skipped)", "raise_beta")
    ]
    assert guard.check(dict(spike), None)[0][1] == "raise_beta"
    assert guard.check(dict(spike), None)[0][1] == "rollback"  # the third in a row
    assert guard.strikes == 0
    guard.check(dict(spike), None)
    guard.check({"iteration": 5, "guard/kl": 0.01}, None)  # a calm batch resets the count
    assert guard.strikes == 0
    assert guard.raised(0.0) == 0.05 and guard.raised(0.1) == 0.2


def test_a_repetitive_batch_triggers_the_hacking_signal():
    guard = Guard(GuardConfig(on_hacking="repair"))
    record = {
        "iteration": 7,
        "guard/distinct_2": 0.05,
        "guard/repetition": 0.8,
        "reward/response_length": 16.0,
    }
    events = guard.check(record, entropy=2.0)
    assert [action for _, action in events] == ["raise_beta", "raise_beta"]
    assert record["guard/low_diversity"] == 1.0 and record["guard/repetitive"] == 1.0
    assert "repetition rate 0.800" in events[1][0]
    # the length drift is against the first iteration's length (the reference policy's)
    events = Guard(GuardConfig(on_hacking="stop"), reference_length=8.0).check(
        {"iteration": 9, "reward/response_length": 24.0}, entropy=0.01
    )
    assert [action for _, action in events] == ["stop", "stop"]  # entropy and length
    assert "entropy collapse" in events[0][0] and "+200%" in events[1][0]
    assert Guard(GuardConfig(enabled=False)).check({"guard/kl_spike": 1.0}, 0.0) == []


def test_every_batch_a_spike_skips_updates_raises_beta_and_rolls_back(tiny_config, capsys):
    """A negative KL cap makes every batch a spike (a synthetic one). (Not -1: RLlib drops
    config attributes equal to its DEPRECATED_VALUE, -1.)"""
    config = tiny_config(
        "run.iterations=4",
        "run.checkpoint_every=1",
        "run.eval_episodes=0",
        "kl.controller=fixed",
        "kl.init_coef=0.01",
        "guard.kl_cap=-0.5",
        "guard.strikes=3",
    )
    records = train(config, progress=False)
    assert all(r["guard/kl_spike"] == 1.0 for r in records)
    assert not any("losses/actor_loss" in r for r in records)  # no update ran
    betas = [r["policy/kl_coef"] for r in records]
    assert betas == [0.01, 0.05, 0.1, 0.2]  # raised after every spike, from the floor up
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[guard]")]
    assert len(lines) == 4
    assert "rolled the policy back to iter_000002 and raised β from 0.1 to 0.2" in lines[2]
    saved = json.loads((config.run_dir / "checkpoints" / "iter_000004" / "driver.json").read_text())
    assert saved["guard"]["strikes"] == 1  # the fourth spike, counted after the rollback

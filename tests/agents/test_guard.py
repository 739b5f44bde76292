"""Guardrails: the batch signals by hand, the guard's decisions on synthetic records, and a real
run that spikes after two calm iterations (updates skipped, β raised, the policy rolled back to
its last good checkpoint, and the run stopped when rolling back does not repair it)."""

import json
from types import SimpleNamespace

import pytest
import torch

from agents.core.errors import GuardStop
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


SPIKE = {"iteration": 1, "guard/kl_spike": 1.0, "guard/kl": 0.9}
CALM = {"iteration": 1, "guard/kl": 0.01}


def actions(guard, record):
    return [action for _, action in guard.check(dict(record), None)]


def test_a_kl_spike_raises_beta_then_rolls_back_to_the_last_good_checkpoint():
    guard = Guard(GuardConfig(strikes=3, max_rollbacks=2))
    guard.saved("iter_000002")
    assert actions(guard, CALM) == []  # iter_000002's weights sampled a calm batch: good
    assert guard.good == "iter_000002"
    guard.saved("iter_000004")  # saved after an update no batch has measured yet
    assert guard.check(dict(SPIKE), None) == [
        ("KL spike: 0.900 per token (update skipped)", "raise_beta")
    ]
    assert guard.candidate is None and guard.good == "iter_000002"  # iter_000004 drifted
    guard.saved("iter_000006")  # saved during the streak: the drifted weights, never good
    assert actions(guard, SPIKE) == ["raise_beta"]
    assert actions(guard, SPIKE) == ["rollback"]  # the third in a row
    assert (guard.strikes, guard.rollbacks, guard.good) == (0, 1, "iter_000002")
    assert actions(guard, SPIKE) == ["raise_beta"]
    assert actions(guard, CALM) == [] and guard.strikes == 0  # a calm batch resets the count
    assert guard.rollbacks == 1  # no new checkpoint proved good since the rollback
    assert guard.raised(0.0) == 0.05 and guard.raised(0.1) == 0.2


def test_spikes_that_rolling_back_does_not_repair_stop_the_run():
    guard = Guard(GuardConfig(strikes=2, max_rollbacks=1))
    assert actions(guard, SPIKE) == ["raise_beta"]
    happened, action = guard.check(dict(SPIKE), None)[0]
    assert action == "stop" and "no checkpoint has sampled a calm batch yet" in happened
    guard = Guard(GuardConfig(strikes=2, max_rollbacks=1), good="iter_000002")
    assert [actions(guard, SPIKE) for _ in range(2)] == [["raise_beta"], ["rollback"]]
    assert actions(guard, SPIKE) == ["raise_beta"]
    happened, action = guard.check(dict(SPIKE), None)[0]
    assert action == "stop"
    assert "after 1 rollback(s) to iter_000002: rolling back does not repair" in happened
    # a new checkpoint that proves good starts the count again
    guard = Guard(GuardConfig(strikes=1, max_rollbacks=1), good="iter_000002", rollbacks=1)
    guard.saved("iter_000008")
    assert actions(guard, CALM) == [] and (guard.good, guard.rollbacks) == ("iter_000008", 0)
    assert actions(guard, SPIKE) == ["rollback"]


def test_the_guard_state_round_trips():
    guard = Guard(GuardConfig(), strikes=2, candidate="iter_000004", good="iter_000002")
    restored = Guard(GuardConfig())
    restored.load_state_dict(guard.state_dict())
    assert restored == guard


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


def test_a_real_run_rolls_back_to_its_good_checkpoint_then_stops(tiny_config, capsys):
    """Two calm iterations (iter_000001 proves good when iteration 2 samples calmly), then the
    same run resumed with a negative KL cap, which makes every batch a spike (not -1: RLlib drops
    config attributes equal to its DEPRECATED_VALUE, -1): updates are skipped, β raised, the
    policy restored to iter_000001, and the run stopped when the spikes come back."""
    from safetensors.torch import load_file

    common = ["run.checkpoint_every=1", "run.keep_checkpoints=0", "run.eval_episodes=0"]
    common += [
        "kl.controller=fixed",
        "kl.init_coef=0.01",
        "guard.strikes=2",
        "guard.max_rollbacks=1",
    ]
    calm = train(tiny_config(*common, "run.iterations=2"), progress=False)
    assert not any(r.get("guard/kl_spike") for r in calm)
    config = tiny_config(*common, "run.iterations=8", "guard.kl_cap=-0.5")
    with pytest.raises(GuardStop, match="after 1 rollback.s. to iter_000001: rolling back"):
        train(config, progress=False)
    records = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").open()]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert not any("losses/actor_loss" in r for r in records[2:])  # every update skipped
    assert [r["policy/kl_coef"] for r in records[2:]] == [0.01, 0.05, 0.1, 0.2]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[guard]")]
    assert len(lines) == 4
    assert "rolled the policy back to iter_000001 and raised β from 0.05 to 0.1" in lines[1]
    assert "stopped the run" in lines[3]

    def weights(iteration):
        folder = config.run_dir / "checkpoints" / f"iter_{iteration:06d}" / "policy"
        return load_file(folder / "model.safetensors")

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    # iteration 2 updated the policy; 3-4 skipped their updates; 4 restored iteration 1's
    assert not same(weights(1), weights(2)) and same(weights(2), weights(3))
    assert same(weights(1), weights(4)) and same(weights(1), weights(6))
    saved = json.loads((config.run_dir / "checkpoints" / "iter_000006" / "driver.json").read_text())
    assert saved["guard"]["good"] == "iter_000001" and saved["guard"]["rollbacks"] == 1


def test_restored_weights_reach_the_env_runner_and_so_do_later_updates(tiny_config, build_algo):
    """RLlib's sync skips weights whose sequence number is not newer than the env runner's: an
    older checkpoint restored mid-run (a rollback) must still reach the runner, and so must the
    updates after it (the restored learner counts from the checkpoint's number again)."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    from agents.core.registry import get_algorithm
    from agents.driver.checkpoints import restore_checkpoint, save_checkpoint
    from agents.driver.weights import current_policy

    config = tiny_config("run.eval_episodes=0")
    algorithm, algo = get_algorithm(config.algorithm), build_algo(config)

    def iterate(iteration):
        algorithm.before_iteration(algo, config, 0.01, iteration)
        algo.train()

    def runner_weights():
        return {k: v.clone() for k, v in current_policy(algo).state_dict().items()}

    def learner_weights():
        state = algo.learner_group.get_weights([DEFAULT_MODULE_ID])[DEFAULT_MODULE_ID]
        return {k.removeprefix("policy."): torch.as_tensor(v) for k, v in state.items()}

    def same(runner, learner):
        keys = [k for k in runner if k in learner]
        return bool(keys) and all(torch.equal(runner[k], learner[k]) for k in keys)

    iterate(0)
    first = runner_weights()
    driver = {"kl_controller": {}, "guard": {}}
    checkpoint = save_checkpoint(
        algo, 1, config.run_dir, driver_state=driver, model_spec=config.model, keep=0
    )
    iterate(1)
    iterate(2)
    assert not same(runner_weights(), first)
    restore_checkpoint(algo, checkpoint)
    assert same(runner_weights(), first)  # the rollback reached the env runner
    iterate(3)
    assert not same(runner_weights(), first)
    assert same(runner_weights(), learner_weights())  # and the next update did too

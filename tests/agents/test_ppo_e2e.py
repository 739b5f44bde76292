"""PPO on RLlib end to end on the tiny task: runs, learns, resumes exactly, survives a dead
env runner."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from agents.core.episode_rows import episode_rows
from agents.driver.checkpoints import latest_checkpoint
from agents.driver.loop import train


def test_a_few_iterations_in_process_with_checkpoint_and_export(tiny_config):
    config = tiny_config("run.iterations=3", "run.checkpoint_every=1", "run.keep_checkpoints=2")
    records = train(config, progress=False)
    assert [r["iteration"] for r in records] == [1, 2, 3]
    for key in (
        "reward/score",
        "reward/kl",
        "reward/vader",
        "losses/actor_loss",
        "losses/critic_loss",
        "policy/kl_coef",
        "perf/sample_tokens_per_s",
    ):
        assert np.isfinite(records[-1][key]), key
    last = latest_checkpoint(config.run_dir)
    assert last.name == "iter_000003"
    assert (last / "policy" / "model.safetensors").exists()
    kept = sorted(p.name for p in (config.run_dir / "checkpoints").iterdir())
    assert kept == ["iter_000002", "iter_000003"]  # the oldest was pruned
    evals = [json.loads(line) for line in (config.run_dir / "eval.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in evals] == [0, 3]


def test_two_remote_env_runners(tiny_config):
    records = train(
        tiny_config(
            "run.iterations=2",
            "scale.num_env_runners=2",
            "scale.num_envs_per_env_runner=4",
            "run.eval_episodes=8",
        ),
        progress=False,
    )
    assert len(records) == 2 and records[-1]["perf/episodes"] == 32


def test_learning_raises_the_held_out_score(tiny_config):
    config = tiny_config("run.iterations=12", "run.checkpoint_every=0", "run.eval_every=0")
    train(config, progress=False)
    evals = [json.loads(line) for line in (config.run_dir / "eval.jsonl").read_text().splitlines()]
    before, after = evals[0]["eval/score"], evals[-1]["eval/score"]
    assert after > before + 0.4, (before, after)


def test_resume_matches_an_uninterrupted_run(tiny_config):
    straight = train(
        tiny_config("run.name=straight", "run.iterations=4", "run.checkpoint_every=100"),
        progress=False,
    )
    first = train(
        tiny_config("run.name=resumed", "run.iterations=2", "run.checkpoint_every=2"),
        progress=False,
    )
    resumed_config = tiny_config("run.name=resumed", "run.iterations=4", "run.checkpoint_every=100")
    with open(resumed_config.run_dir / "metrics.jsonl", "a") as log:  # ran past the checkpoint
        log.write(json.dumps({"iteration": 3, "reward/score": 9.9}) + "\n")
    second = train(resumed_config, progress=False)
    assert [r["iteration"] for r in first + second] == [1, 2, 3, 4]
    logged = (resumed_config.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in logged] == [1, 2, 3, 4]
    for a, b in zip(straight, first + second):
        for key in (
            "reward/score",
            "reward/kl",
            "losses/actor_loss",
            "losses/critic_loss",
            "policy/kl_coef",
        ):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), (a["iteration"], key)
    from safetensors.torch import load_file

    weights = [
        load_file(
            latest_checkpoint(resumed_config.run_dir.parent / name) / "policy" / "model.safetensors"
        )
        for name in ("straight", "resumed")
    ]
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=1e-4, atol=1e-5)


def test_sampler_and_learner_agree_on_logprobs(tiny_config, build_algo):
    """The learner's one-forward-per-episode log-probs equal the sampler's (ratio 1 at start)."""
    algo = build_algo(tiny_config())
    episodes = algo.env_runner_group.local_env_runner.sample()
    rows = episode_rows(episodes)
    module = algo.learner_group._learner.module["default_policy"]
    with torch.no_grad():
        logits = module.forward_train(rows)[Columns.ACTION_DIST_INPUTS]
    logprobs = torch.log_softmax(logits, -1).gather(-1, rows[Columns.ACTIONS][..., None])[..., 0]
    mask = rows[Columns.LOSS_MASK]
    torch.testing.assert_close(logprobs[mask], rows[Columns.ACTION_LOGP][mask], rtol=0, atol=1e-5)


def test_rllib_log_folder_is_in_the_project_cache_not_home(tiny_config, build_algo):
    from rlhf_env.data.assets import cache_dir

    algo = build_algo(tiny_config())
    assert Path(algo.logdir).is_relative_to(cache_dir() / "ray_results")


def test_a_killed_env_runner_is_restarted_and_training_goes_on(tiny_config, build_algo):
    import ray

    algo = build_algo(tiny_config("scale.num_env_runners=2", "scale.num_envs_per_env_runner=4"))
    algo.train()
    victim = algo.env_runner_group._worker_manager._actors[1]
    ray.kill(victim, no_restart=False)  # a crash: Ray may restart the actor process
    deadline = time.monotonic() + 120  # a restarted actor re-imports torch and RLlib
    healthy = 1
    while healthy < 2 and time.monotonic() < deadline:
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled"] > 0  # training goes on
        healthy = algo.env_runner_group.num_healthy_remote_workers()
    assert healthy == 2  # ... and RLlib brought the runner back
    result = algo.train()
    assert result["env_runners"]["num_env_steps_sampled"] > 0

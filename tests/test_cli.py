"""The command line: rollout, prepare --list, reward plugins; clear errors."""

import json

import pytest
from click.testing import CliRunner

from agents.cli import main


def test_rollout_on_the_tiny_task_prints_episodes():
    result = CliRunner().invoke(
        main,
        [
            "rollout",
            "--task",
            "rlhf_env/Tiny-v0",
            "--episodes",
            "4",
            "--num-envs",
            "2",
            "--split",
            "train",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 4
    assert {"prompt", "completion", "score", "episode_kl"} <= set(records[0])


def test_prepare_list_and_reward_list():
    runner = CliRunner()
    listed = runner.invoke(main, ["prepare", "--list"])
    assert listed.exit_code == 0 and "smollm2-135m-instruct" in listed.output
    rewards = runner.invoke(main, ["reward", "list"])
    assert rewards.exit_code == 0 and "vader" in rewards.output


def test_reward_check_passes_and_unknown_names_are_clear():
    runner = CliRunner()
    ok = runner.invoke(main, ["reward", "check", "keyword", "--param", 'keywords=["good"]'])
    assert ok.exit_code == 0 and "conforms" in ok.output
    bad = runner.invoke(main, ["reward", "check", "vadr"])
    assert (
        bad.exit_code == 1 and "UnknownRewardError" in bad.output and "Traceback" not in bad.output
    )


def test_unknown_task_is_a_clear_error():
    result = CliRunner().invoke(main, ["rollout", "--task", "rlhf_env/Nope-v0"])
    assert result.exit_code == 1 and "Nope" in result.output


@pytest.mark.slow
def test_default_demo_rolls_out_smollm2_with_vader_scores():
    from rlhf_env.data.assets import is_prepared

    if not is_prepared("smollm2-135m-instruct"):
        pytest.skip("offline defaults not prepared: run `rlhf-env prepare`")
    result = CliRunner().invoke(
        main, ["rollout", "--episodes", "2", "--num-envs", "2", "--max-new-tokens", "8", "--json"]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 2
    assert all(-1.0 <= r["score"] <= 1.0 and r["completion"].strip() for r in records)
    assert all(abs(r["episode_kl"]) < 1e-2 for r in records)  # untrained policy == reference


def test_train_summary_names_only_the_metrics_an_algorithm_logged():
    from agents.cli.train_commands import summary_line

    ppo = {"iteration": 3, "reward/score": 0.25, "reward/kl": 0.05, "policy/kl_coef": 0.1}
    offline_dpo = {"iteration": 50, "dpo/loss": 0.4777, "dpo/rewards/accuracy": 0.78125}
    assert summary_line(ppo) == "iteration 3: score 0.2500, KL/token 0.0500, beta 0.1000"
    assert summary_line(offline_dpo) == "iteration 50: DPO loss 0.4777, pair accuracy 0.7812"

"""Typed config loading, the train CLI on the tiny task, and offline W&B tracking."""

import json

import pytest
from click.testing import CliRunner
from omegaconf.errors import ConfigKeyError, ValidationError

from agents.core.config import describe, load_config
from agents.core.tracking import Tracker
from agents.cli import main


def test_preset_and_dotted_overrides_are_typed():
    config = load_config("configs/ppo_sentiment.yaml", ["ppo.lr=2e-5", "scale.num_env_runners=2"])
    assert config.ppo.lr == 2e-5 and isinstance(config.ppo.lr, float)
    assert config.scale.num_env_runners == 2
    assert config.task.id == "rlhf_env/Sentiment-v0"
    assert str(config.run_dir) == "runs/ppo_sentiment"


def test_unknown_keys_and_wrong_types_are_errors_naming_the_key():
    with pytest.raises(ConfigKeyError, match="lrr"):
        load_config(None, ["ppo.lrr=1"])
    with pytest.raises(ValidationError, match="ppo_epochs"):
        load_config(None, ["ppo.ppo_epochs=many"])
    with pytest.raises(ValueError, match="critic"):
        load_config(None, ["ppo.critic=both"])
    with pytest.raises(ValueError, match="engine must be one of"):
        load_config(None, ["engine=tgi"])
    with pytest.raises(ValueError, match="offline DPO runs on the local learner"):
        load_config("configs/dpo_offline.yaml", ["scale.num_learners=2"])


def test_every_field_has_help():
    lines = describe()
    assert any(line.startswith("ppo.clip_eps = 0.2: PPO clip range") for line in lines)
    assert all(line.split(": ", 1)[1] for line in lines)


def test_train_cli_on_the_tiny_task(tmp_path, ray_session):
    result = CliRunner().invoke(main, ["train", "configs/ppo_tiny.yaml", "run.iterations=1",
                                       f"run.output_dir={tmp_path}", "run.wandb=disabled"])
    assert result.exit_code == 0, result.output
    assert "iteration 1: score" in result.output
    record = json.loads((tmp_path / "ppo_tiny" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["iteration"] == 1


def test_eval_cli_compares_trained_and_initial(tmp_path, ray_session):
    runner = CliRunner()
    trained = runner.invoke(main, ["train", "configs/ppo_tiny.yaml", "run.iterations=1",
                                   "run.checkpoint_every=1", f"run.output_dir={tmp_path}",
                                   "run.wandb=disabled"])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(main, ["eval", str(tmp_path / "ppo_tiny"), "--episodes", "4"])
    assert result.exit_code == 0, result.output
    assert "initial" in result.output and "trained" in result.output
    assert "kl_per_token" in result.output


def test_help_config_lists_keys():
    result = CliRunner().invoke(main, ["train", "--help-config"])
    assert result.exit_code == 0 and "kl.controller" in result.output


def test_offline_wandb_run_lands_in_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    tracker = Tracker("auto", "rlhf-env-test", "t", tmp_path / "run", {"a": 1})
    tracker.log({"reward/score": 0.5}, step=1)
    tracker.log_samples([("the movie", " was great", 0.6)], step=1)
    tracker.finish()
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))

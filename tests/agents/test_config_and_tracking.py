"""Typed config loading, the train CLI on the tiny task, and offline W&B tracking."""

import json

import pytest
from click.testing import CliRunner
from omegaconf.errors import ConfigKeyError, ValidationError

from agents.cli import main
from agents.core.config import describe, load_config
from agents.core.tracking import Tracker
from agents.driver.loop import train


def test_preset_and_dotted_overrides_are_typed():
    config = load_config("configs/ppo_sentiment.yaml", ["ppo.lr=2e-5", "scale.num_env_runners=2"])
    assert config.algo.lr == 2e-5 and isinstance(config.algo.lr, float)
    assert config.scale.num_env_runners == 2
    assert config.task.id == "rlhf_env/Sentiment-v0"
    assert str(config.run_dir) == "runs/ppo_sentiment"
    # config.yaml round-trips: the algorithm's settings under their section
    assert load_config(None, _dotlist(config.as_dict())) == config


def _dotlist(tree, prefix=""):
    items = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            items += _dotlist(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={json.dumps(value) if value != {} else '{}'}")
    return items


def test_unknown_keys_and_wrong_types_are_errors_naming_the_key():
    with pytest.raises(ConfigKeyError, match="lrr"):
        load_config(None, ["ppo.lrr=1"])
    with pytest.raises(ValidationError, match="epochs"):
        load_config(None, ["ppo.epochs=many"])
    with pytest.raises(ValueError, match="critic"):
        load_config(None, ["ppo.critic=both"])
    with pytest.raises(ValueError, match="engine must be one of"):
        load_config(None, ["engine=tgi"])
    with pytest.raises(ValueError, match="run.eval_envs must be >= 1, got 0"):
        load_config(None, ["run.eval_envs=0"])
    with pytest.raises(ValueError, match="unknown algorithm 'trpo'; choose one of ppo"):
        load_config(None, ["algorithm=trpo"])
    with pytest.raises(ValueError, match=r"section\(s\) \['ppo'\] do not belong to algorithm"):
        load_config("configs/ppo_tiny.yaml", ["algorithm=dpo_online"])
    with pytest.raises(ValueError, match=r"task.overrides has unknown keys \['max_tokens'\]"):
        load_config(None, ["task.overrides.max_tokens=3"])
    with pytest.raises(ValueError, match="not a multiple of scale.num_envs_per_env_runner=8"):
        load_config("configs/ppo_tiny.yaml", ["ppo.episodes_per_iteration=12"])


def test_every_field_has_help():
    lines = describe()
    assert any(line.startswith("ppo.clip_eps = 0.2: Clip range") for line in lines)
    assert any(
        line.startswith("dpo.group_size = 4: Responses sampled per prompt") for line in lines
    )
    assert all(line.startswith("#") or line.split(": ", 1)[1] for line in lines)


def test_registered_task_defaults_reach_training_unchanged(tiny_config, build_algo):
    """Only what task.overrides names replaces the registration's values in the environments
    the env runners build; β starts at the task's kl_coef unless kl.init_coef says otherwise."""
    import gymnasium as gym

    registered = gym.spec("rlhf_env/Tiny-v0").kwargs

    def env_of(*overrides):
        config = tiny_config("kl.init_coef=null", *overrides)
        return build_algo(config).env_runner_group.local_env_runner.env.unwrapped.batch

    default = env_of()
    assert default.max_new_tokens == registered["max_new_tokens"] == 8
    assert default.max_prompt_tokens == registered["max_prompt_tokens"]
    assert default.kl_coef == registered["kl_coef"]
    assert default.kl_estimator == "k1"
    changed = env_of(
        "task.overrides.max_new_tokens=5", "task.overrides.kl_estimator=k3", "kl.init_coef=0.2"
    )
    assert (changed.max_new_tokens, changed.kl_estimator, changed.kl_coef) == (5, "k3", 0.2)
    assert changed.max_prompt_tokens == registered["max_prompt_tokens"]


def test_an_iteration_samples_exactly_its_episodes(tiny_config):
    """episodes_per_iteration counts episodes, however early they end at EOS."""
    config = tiny_config(
        "ppo.episodes_per_iteration=16",
        "run.iterations=2",
        "run.checkpoint_every=0",
        "run.eval_episodes=0",
    )
    records = train(config, progress=False)
    assert [r["perf/episodes"] for r in records] == [16, 16]


def test_train_cli_on_the_tiny_task(tmp_path, ray_session):
    result = CliRunner().invoke(
        main,
        [
            "train",
            "configs/ppo_tiny.yaml",
            "run.iterations=1",
            f"run.output_dir={tmp_path}",
            "run.wandb=disabled",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "iteration 1: score" in result.output
    record = json.loads((tmp_path / "ppo_tiny" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["iteration"] == 1


def test_eval_cli_compares_trained_and_initial(tmp_path, ray_session):
    runner = CliRunner()
    trained = runner.invoke(
        main,
        [
            "train",
            "configs/ppo_tiny.yaml",
            "run.iterations=1",
            "run.checkpoint_every=1",
            f"run.output_dir={tmp_path}",
            "run.wandb=disabled",
        ],
    )
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(main, ["eval", str(tmp_path / "ppo_tiny"), "--episodes", "4"])
    assert result.exit_code == 0, result.output
    assert "initial" in result.output and "trained" in result.output
    assert "kl_per_token" in result.output
    # --reward scores with another plugin than the run's (the run's config is left as it was).
    rescored = runner.invoke(main, ["eval", str(tmp_path / "ppo_tiny"), "--reward", "nosuch"])
    assert rescored.exit_code != 0 and "nosuch" in rescored.output
    assert "nosuch" not in (tmp_path / "ppo_tiny" / "config.yaml").read_text()


def test_help_config_lists_keys():
    result = CliRunner().invoke(main, ["train", "--help-config"])
    assert result.exit_code == 0 and "kl.controller" in result.output


def test_offline_wandb_run_lands_in_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    tracker = Tracker("auto", "rlhf-env-test", "t", tmp_path / "run", {"a": 1})
    tracker.log({"reward/score": 0.5}, step=1)
    tracker.log_samples([("the movie", " was great", 0.6)], step=1)
    conversation = [{"role": "user", "content": "Say hi."}]  # shown as its text
    tracker.log_samples([(conversation, "hi", 1.0)], step=2)
    tracker.finish()
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))

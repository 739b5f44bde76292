"""Bad input gets a clear error with one clear line."""

import re

import gymnasium as gym
import pytest

import rlhf_env  # noqa: F401
from rewards import RewardPluginError, UnknownRewardError
from rlhf_env import TokenAction
from rlhf_env.data.prompts import load_prompts
from rlhf_env.data.tables import DataFileError


def tiny(reward="vader", **kwargs):
    return gym.make("rlhf_env/Tiny-v0", reward=reward, **kwargs).unwrapped


@pytest.mark.parametrize("action", [-1, 10_000])
def test_out_of_range_action(action):
    env = tiny()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="out of range"):
        env.step(action)


@pytest.mark.parametrize("action", [1.5, 3.0, "5", None, True])
def test_non_integer_action(action):
    env = tiny()
    env.reset(seed=0)
    with pytest.raises(TypeError, match="integer token id"):
        env.step(action)


@pytest.mark.parametrize("logprob", [float("nan"), float("inf"), 0.5])
def test_bad_supplied_logprob(logprob):
    env = tiny()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="log-prob"):
        env.step(TokenAction(5, logprob))


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt(prompt):
    env = tiny()
    with pytest.raises(ValueError, match="non-empty"):
        env.reset(options={"prompt": prompt})


def test_over_long_prompt():
    env = tiny(max_prompt_tokens=4)
    with pytest.raises(ValueError, match="more than max_prompt_tokens=4"):
        env.reset(options={"prompt": "the movie was really very good"})


def test_empty_prompt_source():
    with pytest.raises(ValueError, match="empty"):
        tiny(prompts=[])


def test_unknown_task():
    with pytest.raises(gym.error.Error, match="Nope"):
        gym.make("rlhf_env/Nope-v0")


def test_unknown_reward_lists_the_known_ones():
    with pytest.raises(UnknownRewardError, match="vader"):
        tiny(reward="no_such_reward")


def test_unknown_kl_estimator():
    with pytest.raises(ValueError, match="k1"):
        tiny(kl_estimator="k9")


def _finish(env):
    env.reset(seed=0)
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(5)
        done = terminated or truncated


def nan_reward(prompts, completions, **kwargs):
    return [float("nan")] * len(completions)


def short_reward(prompts, completions, **kwargs):
    return []


def raising_reward(prompts, completions, **kwargs):
    raise RuntimeError("model server down")


@pytest.mark.parametrize(
    "reward, match",
    [
        (nan_reward, "nan_reward"),
        (short_reward, "short_reward"),
        (raising_reward, "raising_reward"),
    ],
)
def test_broken_reward_plugin_is_named(reward, match):
    env = tiny(reward=reward, max_new_tokens=2)
    with pytest.raises(RewardPluginError, match=match):
        _finish(env)


# ---- β, model paths and prompt files --------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), -0.1])
def test_bad_kl_coef_is_refused(value):
    env = gym.make("rlhf_env/Tiny-v0").unwrapped
    with pytest.raises(ValueError, match="kl_coef .* must be a finite number >= 0"):
        env.kl_coef = value
    assert env.kl_coef == 0.05  # the registered β is kept
    vec = gym.make_vec("rlhf_env/Tiny-v0", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(ValueError, match="kl_coef .* must be a finite number >= 0"):
        vec.unwrapped.kl_coef = value
    assert vec.unwrapped.kl_coef == 0.05
    with pytest.raises(ValueError, match="kl_coef .* must be a finite number >= 0"):
        gym.make("rlhf_env/Tiny-v0", kl_coef=value)


def test_missing_model_folder_says_so():
    with pytest.raises(
        FileNotFoundError, match=r"^no model at /no/such/folder on host \S+: it is not a folder"
    ):
        gym.make("rlhf_env/TextGen-v0", model="/no/such/folder", prompts=["hi"], reward="vader")


def test_malformed_jsonl_prompt_file_names_the_file_and_line(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_ENV_CACHE", str(tmp_path / "cache"))  # datasets' cache
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "the movie was"}\n{"prompt": "the acting\n{"prompt": "we were"}\n')
    with pytest.raises(
        DataFileError,
        match=rf"could not read prompt file '{re.escape(str(path))}': line 2 is not valid JSON",
    ):
        gym.make("rlhf_env/Tiny-v0", prompts=str(path))


def test_prompt_file_without_the_prompt_column_lists_its_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_ENV_CACHE", str(tmp_path / "cache"))  # datasets' cache
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"question": "the movie was", "label": 1}\n')
    with pytest.raises(
        DataFileError,
        match=rf"'{re.escape(str(path))}' has no column 'prompt' "
        r"\(its columns are \['question', 'label'\]\)",
    ):
        gym.make("rlhf_env/Tiny-v0", prompts=str(path))


def test_loading_a_prompt_file_prints_no_progress(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("RLHF_ENV_CACHE", str(tmp_path / "cache"))  # a fresh datasets cache
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(f'{{"prompt": "the film {i}"}}\n' for i in range(30)))
    capfd.readouterr()
    assert len(load_prompts(str(path), split="all")) == 30
    out, err = capfd.readouterr()
    for text in (out, err):
        assert "Generating" not in text and "%|" not in text, text

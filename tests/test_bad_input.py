"""Bad input gets a clear error (SPEC.md section 9)."""

import gymnasium as gym
import pytest

import rlhf_env  # noqa: F401
from rewards import RewardPluginError, UnknownRewardError
from rlhf_env import TokenAction


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

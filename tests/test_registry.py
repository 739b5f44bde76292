"""Every registered task passes Gymnasium's own environment checker."""

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import rlhf_env  # noqa: F401  (registers the tasks)
from rlhf_env.data.errors import MissingAssetError

REGISTERED = sorted(env_id for env_id in gym.registry if env_id.startswith("rlhf_env/"))

# The tasks the README documents (its table of tasks).
DOCUMENTED = [
    "rlhf_env/GuessNumber-v0",
    "rlhf_env/Instruct-v0",
    "rlhf_env/Sentiment-v0",
    "rlhf_env/TextGen-v0",
    "rlhf_env/Tiny-v0",
    "rlhf_env/TinyGuess-v0",
]


def test_registry_holds_the_documented_tasks():
    assert REGISTERED == DOCUMENTED
    for env_id in REGISTERED:
        spec = gym.spec(env_id)
        assert spec.entry_point == "rlhf_env.envs.env:TextGenEnv"
        assert spec.vector_entry_point == "rlhf_env.envs.vector:TextGenVectorEnv"


@pytest.mark.parametrize("env_id", REGISTERED)
def test_check_env(env_id):
    try:
        env = gym.make(env_id, max_new_tokens=4)
    except MissingAssetError as missing:
        pytest.skip(str(missing))
    check_env(env.unwrapped, skip_render_check=False)
    env.close()

"""Every registered task passes Gymnasium's own environment checker."""

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import rlhf_env
from rlhf_env.data.assets import MissingAssetError

REGISTERED = sorted(env_id for env_id in gym.registry if env_id.startswith("rlhf_env/"))


def test_registry_holds_the_documented_tasks():
    assert set(REGISTERED) == set(rlhf_env.TASKS)


@pytest.mark.parametrize("env_id", REGISTERED)
def test_check_env(env_id):
    try:
        env = gym.make(env_id, max_new_tokens=4)
    except MissingAssetError as missing:
        pytest.skip(str(missing))
    check_env(env.unwrapped, skip_render_check=False)
    env.close()

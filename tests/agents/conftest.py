"""One local Ray instance for all agent tests; runs and W&B files under pytest's tmp folders."""

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from agents.driver.loop import init_ray

    init_ray(4)
    yield
    ray.shutdown()


@pytest.fixture
def tiny_config(tmp_path, ray_session):
    """The tiny PPO preset with a run folder in tmp_path; pass overrides as strings."""
    from agents.core.config import load_config

    def make(*overrides):
        return load_config("configs/ppo_tiny.yaml",
                           [f"run.output_dir={tmp_path}", "run.wandb=disabled", *overrides])

    return make

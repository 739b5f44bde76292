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
    """A tiny preset (PPO by default) with a run folder in tmp_path; overrides as strings."""
    from agents.core.config import load_config

    def make(*overrides, preset="configs/ppo_tiny.yaml"):
        return load_config(preset, [f"run.output_dir={tmp_path}", "run.wandb=disabled", *overrides])

    return make


@pytest.fixture
def build_algo():
    """Build the RLlib algorithm of a training config (stopped after the test)."""
    from agents.core.registry import get_algorithm

    built = []

    def build(config):
        algorithm = get_algorithm(config.algorithm)
        algorithm.prepare(config)
        built.append(algorithm.rllib_config(config).build_algo())
        return built[-1]

    yield build
    for algo in built:
        algo.stop()

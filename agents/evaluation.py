"""Held-out evaluation: mean score and per-token KL to the reference of a policy, with samples."""

from __future__ import annotations

import gymnasium as gym

import rlhf_env  # noqa: F401
from agents.config import TrainConfig
from rlhf_env.rollout import collect_episodes, summarize
from rlhf_env.sampler import LMSampler

EVAL_SEED = 12345  # the same held-out prompts and sampling noise for every evaluation


class Evaluator:
    """Rolls a policy out on the task's held-out prompts (``split="test"``)."""

    def __init__(self, config: TrainConfig, num_envs: int = 8):
        self.envs = gym.make_vec(config.task.id, num_envs=num_envs,
                                 vectorization_mode="vector_entry_point",
                                 **config.env_kwargs(split="test"))
        self.episodes = config.run.eval_episodes

    def __call__(self, policy) -> tuple[dict[str, float], list[dict]]:
        """``({"score", "kl_per_token", "response_length"}, episode records)`` of ``policy``."""
        sampler = LMSampler(policy, self.envs.num_envs, seed=EVAL_SEED)
        records = collect_episodes(self.envs, sampler, self.episodes, seed=EVAL_SEED)
        return summarize(records), records

"""Held-out evaluation of a policy: score and KL per token to the reference on the task's
held-out prompts (``split="test"``), with samples, plus whatever extra figures the algorithm
adds (offline DPO: the implicit-reward accuracy, margin and loss on held-out pairs)."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym

import rlhf_env  # noqa: F401  (registers the tasks)
from agents.core.config import TrainConfig
from rlhf_env.policy.rollout import collect_episodes, summarize
from rlhf_env.policy.sampler import LMSampler

EVAL_SEED = 12345  # the same held-out prompts and sampling noise for every evaluation


class Evaluator:
    """Rolls a policy out on the task's held-out prompts; ``run.eval_episodes = 0`` skips the
    rollouts. ``extra(policy)`` returns the algorithm's own held-out figures."""

    def __init__(self, config: TrainConfig, extra: Callable | None = None):
        self.episodes = config.run.eval_episodes
        self.envs = (
            gym.make_vec(
                config.task.id,
                num_envs=config.run.eval_envs,
                vectorization_mode="vector_entry_point",
                **config.env_kwargs(split="test"),
            )
            if self.episodes
            else None
        )
        self.extra = extra

    def __call__(self, policy, step: int = 0) -> tuple[dict[str, float], list[dict]]:
        """``({"score", "kl_per_token", "response_length", ...}, episode records)``; rewards see
        ``step`` (training iterations done) as ``trainer_state.global_step``."""
        summary, records = {}, []
        if self.envs is not None:
            self.envs.unwrapped.global_step = step
            sampler = LMSampler(policy, self.envs.num_envs, seed=EVAL_SEED)
            records = collect_episodes(self.envs, sampler, self.episodes, seed=EVAL_SEED)
            summary = summarize(records)
        if self.extra is not None:
            summary.update(self.extra(policy))
        return summary, records

"""Held-out evaluation of a policy: score and per-token KL to the reference on the task's
held-out prompts, with samples; for offline DPO also the implicit-reward accuracy, margin and
loss on held-out preference pairs."""

from __future__ import annotations

import gymnasium as gym

import rlhf_env  # noqa: F401
from agents.config import TrainConfig
from rlhf_env.rollout import collect_episodes, summarize
from rlhf_env.sampler import LMSampler

EVAL_SEED = 12345  # the same held-out prompts and sampling noise for every evaluation


class Evaluator:
    """Rolls a policy out on the task's held-out prompts (``split="test"``); with ``pairs`` (a
    held-out pair table of :mod:`agents.dpo.offline_data`) it also scores the policy's implicit
    reward on them. ``run.eval_episodes = 0`` skips the rollouts."""

    def __init__(self, config: TrainConfig, num_envs: int = 8, pairs=None):
        self.episodes = config.run.eval_episodes
        self.envs = gym.make_vec(config.task.id, num_envs=num_envs,
                                 vectorization_mode="vector_entry_point",
                                 **config.env_kwargs(split="test")) if self.episodes else None
        self.pairs, self.dpo = pairs, config.dpo

    def __call__(self, policy) -> tuple[dict[str, float], list[dict]]:
        """``({"score", "kl_per_token", "response_length", ...}, episode records)``."""
        summary, records = {}, []
        if self.envs is not None:
            sampler = LMSampler(policy, self.envs.num_envs, seed=EVAL_SEED)
            records = collect_episodes(self.envs, sampler, self.episodes, seed=EVAL_SEED)
            summary = summarize(records)
        if self.pairs is not None:
            from agents.dpo.loss import AVERAGE_LOGPROBS
            from agents.dpo.offline_data import preference_metrics

            summary.update(preference_metrics(
                policy, self.pairs, beta=self.dpo.beta, loss_type=self.dpo.loss_type,
                average=AVERAGE_LOGPROBS[self.dpo.loss_type]))
        return summary, records

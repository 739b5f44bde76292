"""PPO for LLM policies on RLlib (new API stack): Schulman et al. 2017 with the per-token KL
reward of Ziegler et al. 2019 (docs/formulation.md eqs. 1-17).

RLlib's PPO algorithm class runs with our training step (:mod:`agents.core.training_step`:
exactly ``ppo.episodes_per_iteration`` whole episodes, sharded whole over the learners) and our
LLM pieces: one row per episode with GAE (:class:`SequenceBatchConnector`) and the PPO losses
over row minibatches (:class:`LLMPPOLearner`). RLlib's ``use_kl_loss`` (KL to the previous
policy) is off: the KL to the reference is in the environment's reward, with β pushed by the
driver's KL controller.
"""

from __future__ import annotations

import functools

from ray.rllib.algorithms.ppo import PPO as RLlibPPO
from ray.rllib.algorithms.ppo import PPOConfig as RLlibPPOConfig

from agents.core.algorithm import OnlineLLMAlgorithm
from agents.core.training_step import OnlineTrainingStep
from agents.ppo.config import PPOSettings
from agents.ppo.connector import SequenceBatchConnector
from agents.ppo.learner import LLMPPOLearner


class LLMPPO(OnlineTrainingStep, RLlibPPO):
    """RLlib's PPO with the episode-exact, episode-sharded training step."""


class LLMPPOConfig(RLlibPPOConfig):
    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or LLMPPO)


class PPOAlgorithm(OnlineLLMAlgorithm):
    def episodes_per_iteration(self, config) -> int:
        return config.algo.episodes_per_iteration

    def validate(self, config) -> None:
        super().validate(config)
        self.require_even_split(config, "minibatch_episodes")

    def rllib_config(self, config) -> LLMPPOConfig:
        ppo = config.algo
        rllib_config = self.configure_online(
            LLMPPOConfig(),
            config,
            critic=ppo.critic,
            learner_class=LLMPPOLearner,
            learner_config={
                "epochs": ppo.epochs,
                "minibatch_episodes": ppo.minibatch_episodes,
                "clip_eps": ppo.clip_eps,
                "vf_coef": ppo.vf_coef,
                "entropy_coef": ppo.entropy_coef,
                "value_clip": ppo.value_clip,
                "correction": ppo.correction,
                "correction_cap": ppo.correction_cap,
            },
            learner_connector=functools.partial(
                SequenceBatchConnector,
                gamma=ppo.gamma,
                lam=ppo.lam,
                whiten_advantages=ppo.whiten_advantages,
            ),
        )
        return rllib_config.training(
            lr=ppo.lr,
            grad_clip=ppo.grad_clip,
            grad_clip_by="global_norm",
            use_kl_loss=False,
            # RLlib's batch settings are unused (our training step samples whole episodes and
            # the learner makes its own minibatches); these only pass PPO's config checks.
            train_batch_size_per_learner=ppo.episodes_per_iteration,
            minibatch_size=None,
            num_epochs=1,
        )


PPO = PPOAlgorithm("ppo", "ppo", PPOSettings)

"""RLlib's PPO algorithm configured for LLM policies on rlhf_env (new API stack).

RLlib's own PPO training step (sample -> learner update -> weight sync) runs unchanged; the LLM
parts plug in through ``agents.algorithm.configure_llm``: one row per episode with GAE
(``SequenceBatchConnector``) and SPEC.md section 2 losses over row minibatches
(``LLMPPOLearner``). RLlib's ``use_kl_loss`` (KL to the previous policy) is off: the KL to the
reference is in the environment's reward, with β pushed by the driver's KL controller.
"""

from __future__ import annotations

import functools

from ray.rllib.algorithms.ppo import PPOConfig as RLlibPPOConfig

from agents.algorithm import configure_llm
from agents.config import TrainConfig
from agents.ppo.connector import SequenceBatchConnector
from agents.ppo.learner import LLMPPOLearner


def build_ppo_config(config: TrainConfig) -> RLlibPPOConfig:
    """The RLlib ``PPOConfig`` of a training config."""
    ppo = config.ppo
    rllib_config = configure_llm(
        RLlibPPOConfig(), config, critic=ppo.critic, learner_class=LLMPPOLearner,
        learner_config={
            "ppo_epochs": ppo.ppo_epochs, "minibatch_rows": ppo.minibatch_rows,
            "clip_eps": ppo.clip_eps, "vf_coef": ppo.vf_coef,
            "entropy_coef": ppo.entropy_coef, "value_clip": ppo.value_clip,
        },
        learner_connector=functools.partial(
            SequenceBatchConnector, gamma=ppo.gamma, lam=ppo.lam,
            whiten_advantages=ppo.whiten_advantages),
    )
    return rllib_config.training(
        lr=ppo.lr,
        grad_clip=ppo.grad_clip,
        grad_clip_by="global_norm",
        use_kl_loss=False,
        train_batch_size_per_learner=ppo.episodes_per_iteration * config.task.max_new_tokens
        // max(1, config.scale.num_learners),
        minibatch_size=None,
        num_epochs=1,  # PPO's epochs run inside LLMPPOLearner, over whole episodes
    )

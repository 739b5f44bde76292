"""RLlib's PPO algorithm configured for LLM policies on rlhf_env (new API stack).

RLlib's own PPO training step (sample -> learner update -> weight sync) runs unchanged; the LLM
parts plug in through the fluent config builder: our RLModule (policy LM + value head), our env
runner (KV-cached batched sampling that supplies log-probs to the env), our learner connector
(one row per episode, GAE) and our learner (SPEC.md section 2 losses, PPO epochs over rows).
RLlib's ``use_kl_loss`` (KL to the previous policy) is off: the KL to the reference is in the
environment's reward, with β pushed by the driver's KL controller.
"""

from __future__ import annotations

import functools
import os

from ray.rllib.algorithms.ppo import PPOConfig as RLlibPPOConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from agents.config import TrainConfig
from agents.env_runner import LLMEnvRunner
from agents.module import CausalLMModule
from agents.ppo.connector import SequenceBatchConnector
from agents.ppo.learner import LLMPPOLearner


def threads_per_process(config: TrainConfig) -> int:
    """Torch threads per process so that runners and learners do not oversubscribe the cores."""
    if config.scale.threads_per_worker:
        return config.scale.threads_per_worker
    processes = 1 + config.scale.num_env_runners + config.scale.num_learners
    return max(1, (os.cpu_count() or 1) // processes)


def build_ppo_config(config: TrainConfig) -> RLlibPPOConfig:
    """The RLlib ``PPOConfig`` of a training config."""
    task, ppo, scale = config.task, config.ppo, config.scale
    env_config = dict(task.env_kwargs)
    env_config.update(model=task.model, max_new_tokens=task.max_new_tokens,
                      kl_estimator=task.kl_estimator, kl_coef=config.kl.init_coef)
    threads = threads_per_process(config)
    return (
        RLlibPPOConfig()
        .environment(env=task.id, env_config=env_config, disable_env_checking=True)
        .env_runners(
            env_runner_cls=LLMEnvRunner,
            num_env_runners=scale.num_env_runners,
            num_envs_per_env_runner=scale.num_envs_per_env_runner,
            batch_mode="complete_episodes",
            num_cpus_per_env_runner=1,
            sample_timeout_s=3600,
        )
        .learners(
            learner_class=LLMPPOLearner,
            learner_config_dict={
                "ppo_epochs": ppo.ppo_epochs, "minibatch_rows": ppo.minibatch_rows,
                "clip_eps": ppo.clip_eps, "vf_coef": ppo.vf_coef,
                "entropy_coef": ppo.entropy_coef, "value_clip": ppo.value_clip,
            },
            num_learners=scale.num_learners,
            add_default_connectors_to_learner_pipeline=False,
            learner_connector=functools.partial(
                SequenceBatchConnector, gamma=ppo.gamma, lam=ppo.lam,
                whiten_advantages=ppo.whiten_advantages,
            ),
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=CausalLMModule,
                model_config={"model": task.model, "critic": ppo.critic},
            )
        )
        .training(
            lr=ppo.lr,
            grad_clip=ppo.grad_clip,
            grad_clip_by="global_norm",
            use_kl_loss=False,
            train_batch_size_per_learner=ppo.episodes_per_iteration * task.max_new_tokens
            // max(1, scale.num_learners),
            minibatch_size=None,
            num_epochs=1,  # PPO's epochs run inside LLMPPOLearner, over whole episodes
        )
        .fault_tolerance(restart_failed_env_runners=True)
        .python_environment(extra_python_environs_for_worker={
            "OMP_NUM_THREADS": str(threads), "RAY_USAGE_STATS_ENABLED": "0",
        })
        .debugging(seed=config.run.seed, log_level="ERROR")
    )

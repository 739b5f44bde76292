"""The LLM parts shared by every RLlib algorithm here, set through RLlib's fluent config builder.

All of them (PPO, online and offline DPO): our RLModule (causal LM, with or without a value
head), our learner connector and learner, one torch thread pool per process sized so that
runners and learners do not oversubscribe the cores. The online ones add our env runner
(KV-cached batched sampling that supplies log-probs to the environment), complete-episode
batches and restarts of failed env runners.
"""

from __future__ import annotations

import os

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from agents.core.config import TrainConfig
from agents.core.env_runner import LLMEnvRunner
from agents.core.module import CausalLMModule


def threads_per_process(config: TrainConfig) -> int:
    """Torch threads per process so that runners and learners do not oversubscribe the cores."""
    if config.scale.threads_per_worker:
        return config.scale.threads_per_worker
    processes = 1 + config.scale.num_env_runners + config.scale.num_learners
    return max(1, (os.cpu_count() or 1) // processes)


def configure_module_and_learner(rllib_config: AlgorithmConfig, config: TrainConfig, *,
                                 critic: str, learner_class: type, learner_config: dict,
                                 learner_connector, spaces: tuple = (None, None)
                                 ) -> AlgorithmConfig:
    """Our RLModule, learner and learner connector, seed and per-process threads.

    ``spaces`` (observation, action) are needed where no environment gives them (offline)."""
    threads = threads_per_process(config)
    return (
        rllib_config
        .learners(
            learner_class=learner_class,
            learner_config_dict=learner_config,
            num_learners=config.scale.num_learners,
            add_default_connectors_to_learner_pipeline=False,
            learner_connector=learner_connector,
        )
        .rl_module(rl_module_spec=RLModuleSpec(
            module_class=CausalLMModule, observation_space=spaces[0], action_space=spaces[1],
            model_config={"model": config.task.model, "critic": critic,
                          "engine": config.engine}))
        .python_environment(extra_python_environs_for_worker={
            "OMP_NUM_THREADS": str(threads), "RAY_USAGE_STATS_ENABLED": "0",
        })
        .debugging(seed=config.run.seed, log_level="ERROR")
    )


def configure_llm(rllib_config: AlgorithmConfig, config: TrainConfig, **learner) -> AlgorithmConfig:
    """Apply the shared LLM settings of an online algorithm (see the module docstring);
    ``learner`` goes to :func:`configure_module_and_learner`."""
    task, scale = config.task, config.scale
    env_config = config.env_kwargs(kl_coef=config.kl.init_coef)
    return (
        configure_module_and_learner(rllib_config, config, **learner)
        .environment(env=task.id, env_config=env_config, disable_env_checking=True)
        .env_runners(
            env_runner_cls=LLMEnvRunner,
            num_env_runners=scale.num_env_runners,
            num_envs_per_env_runner=scale.num_envs_per_env_runner,
            batch_mode="complete_episodes",
            num_cpus_per_env_runner=1,
            sample_timeout_s=3600,
        )
        .fault_tolerance(restart_failed_env_runners=True)
    )


def build_algorithm_config(config: TrainConfig) -> AlgorithmConfig:
    """The RLlib config of ``config.algorithm``."""
    if config.algorithm == "ppo":
        from agents.ppo.algorithm import build_ppo_config

        return build_ppo_config(config)
    if config.algorithm == "dpo_offline":
        from agents.dpo.offline import build_offline_dpo_config

        return build_offline_dpo_config(config)
    from agents.dpo.algorithm import build_online_dpo_config

    return build_online_dpo_config(config)

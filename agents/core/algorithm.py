"""The one small interface between the training driver and an algorithm, and the RLlib settings
every algorithm here shares.

An algorithm (PPO, online DPO, offline DPO, ...) is an :class:`LLMAlgorithm` instance in its own
folder, registered by name in :mod:`agents.core.registry`. The driver (:mod:`agents.driver`)
knows only this interface: validate the config, prepare data, build the RLlib config, push what
the env runners need before an iteration, and evaluate anything beyond the held-out rollouts.

Every algorithm runs our RLModule (a causal LM, with or without a value head), our learner and
learner connector, and one torch thread pool per process sized so that runners and learners do
not oversubscribe the cores. The online ones (:class:`OnlineLLMAlgorithm`) add our env runner
(KV-cached batched sampling that supplies log-probs to the environment), complete-episode
batches and restarts of failed env runners.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from agents.core.env_runner import LLMEnvRunner
from agents.core.module import CausalLMModule
from rlhf_env.data.typed_config import to_dict

if TYPE_CHECKING:
    from agents.core.config import TrainConfig


class LLMAlgorithm(abc.ABC):
    """What the training driver needs of one algorithm.

    Args:
        name: its registry name (``algorithm:`` in a config).
        section: the config section holding its settings (``ppo``, ``dpo``, ...).
        settings_class: the dataclass of that section (help text on every field).
    """

    def __init__(self, name: str, section: str, settings_class: type):
        self.name, self.section, self.settings_class = name, section, settings_class

    def validate(self, config: TrainConfig) -> None:
        """Raise ``ValueError`` (one clear line) for settings this algorithm cannot run."""

    def require_even_split(self, config: TrainConfig, *names: str) -> None:
        """Each named count of the algorithm's section must divide over the learners: every
        learner takes the same number of whole units."""
        for name in names:
            value = getattr(config.algo, name)
            if value % config.scale.learning_processes:
                raise ValueError(
                    f"{self.section}.{name}={value} does not split evenly over "
                    f"scale.num_learners={config.scale.num_learners}"
                )

    def prepare(self, config: TrainConfig) -> None:
        """Build what must exist before the RLlib algorithm is (e.g. offline pair tables)."""

    @abc.abstractmethod
    def rllib_config(self, config: TrainConfig) -> AlgorithmConfig:
        """The RLlib ``AlgorithmConfig`` of a training config."""

    def before_iteration(self, algo, config: TrainConfig, kl_coef: float, iteration: int) -> None:
        """Called before each ``algo.train()`` with the KL controller's β (online: pushed to the
        env runners)."""

    def extra_evaluation(self, config: TrainConfig) -> Callable[[Any], dict[str, float]] | None:
        """A function of the current policy returning extra held-out figures, or None."""
        return None


class OnlineLLMAlgorithm(LLMAlgorithm):
    """An algorithm that samples episodes from the environment with our env runners."""

    def validate(self, config: TrainConfig) -> None:
        episodes = self.episodes_per_iteration(config)
        if episodes % config.scale.num_envs_per_env_runner:
            raise ValueError(
                f"{self.name} samples {episodes} episodes per iteration, not a multiple of "
                f"scale.num_envs_per_env_runner={config.scale.num_envs_per_env_runner}: an env "
                "runner samples one episode per environment at a time"
            )
        if self.num_units(config) % config.scale.learning_processes:
            raise ValueError(
                f"{self.name}: {self.num_units(config)} {self.unit_name} per iteration do not "
                f"split evenly over scale.num_learners={config.scale.num_learners}"
            )

    unit_name = "episodes"

    @abc.abstractmethod
    def episodes_per_iteration(self, config: TrainConfig) -> int:
        """Episodes sampled per training iteration."""

    def num_units(self, config: TrainConfig) -> int:
        """Training units per iteration (episodes; for group algorithms, groups), which the
        driver shards over the learners, whole."""
        return self.episodes_per_iteration(config)

    def kl_in_reward(self, config: TrainConfig) -> bool:
        """Whether β penalises the environment's per-token reward (eq. 2) or, False, weighs a
        KL term in the algorithm's loss (the environment's β is then 0)."""
        return True

    def before_iteration(self, algo, config: TrainConfig, kl_coef: float, iteration: int) -> None:
        in_reward = self.kl_in_reward(config)
        algo.env_runner_group.foreach_env_runner(
            lambda runner: (
                runner.env is not None and runner.set_round(kl_coef, iteration, in_reward)
            ),
            local_env_runner=True,
        )

    def configure_online(
        self,
        rllib_config: AlgorithmConfig,
        config: TrainConfig,
        *,
        group_size: int = 1,
        env_overrides: dict | None = None,
        **learner,
    ) -> AlgorithmConfig:
        """The shared settings of an online algorithm (see the module docstring);
        ``env_overrides`` are environment arguments the algorithm itself sets, ``learner`` goes
        to :func:`configure_module_and_learner`."""
        scale = config.scale
        rllib_config = configure_module_and_learner(rllib_config, config, **learner)
        rllib_config.episodes_per_iteration = self.episodes_per_iteration(config)
        rllib_config.group_size = group_size
        # An env runner with LoRA hands its environment the policy's base as the reference,
        # unless the algorithm runs without one.
        rllib_config.share_base_as_reference = (env_overrides or {}).get("reference", True)
        guard = config.guard
        rllib_config.kl_spike_threshold = (
            guard.spike_threshold(config.kl.target) if guard.enabled else None
        )
        return (
            rllib_config.environment(
                env=config.task.id,
                env_config={
                    **config.env_kwargs(
                        kl_coef=config.initial_kl_coef if self.kl_in_reward(config) else 0.0
                    ),
                    # With LoRA the env runner hands the environment the policy's base (adapters
                    # off) as its reference: it loads none; β arrives once it has one.
                    **({"reference": False, "kl_coef": 0.0} if config.lora.r else {}),
                    **(env_overrides or {}),
                },
                disable_env_checking=True,
            )
            .env_runners(
                env_runner_cls=LLMEnvRunner,
                num_env_runners=scale.num_env_runners,
                num_envs_per_env_runner=scale.num_envs_per_env_runner,
                num_gpus_per_env_runner=scale.num_gpus_per_env_runner,
                batch_mode="complete_episodes",
                num_cpus_per_env_runner=1,
                sample_timeout_s=3600,
            )
            .fault_tolerance(restart_failed_env_runners=True)
        )


class GroupSampledAlgorithm(OnlineLLMAlgorithm):
    """An online algorithm that samples ``group_size`` responses to each prompt side by side
    (online DPO, the GRPO family): its training unit is a prompt group, kept whole on one
    learner."""

    unit_name = "prompt groups"

    def episodes_per_iteration(self, config: TrainConfig) -> int:
        return config.algo.prompts_per_iteration * config.algo.group_size

    def num_units(self, config: TrainConfig) -> int:
        return config.algo.prompts_per_iteration

    def validate(self, config: TrainConfig) -> None:
        if config.scale.num_envs_per_env_runner % config.algo.group_size:
            raise ValueError(
                f"scale.num_envs_per_env_runner ({config.scale.num_envs_per_env_runner}) must "
                f"be a multiple of the group size {self.section}.group_size="
                f"{config.algo.group_size}: the responses to one prompt are sampled side by side"
            )
        super().validate(config)


def threads_per_process(config: TrainConfig) -> int:
    """Torch threads per process so that runners and learners do not oversubscribe the cores."""
    if config.scale.threads_per_worker:
        return config.scale.threads_per_worker
    processes = 1 + config.scale.num_env_runners + config.scale.num_learners
    return max(1, (os.cpu_count() or 1) // processes)


def configure_module_and_learner(
    rllib_config: AlgorithmConfig,
    config: TrainConfig,
    *,
    critic: str,
    learner_class: type,
    learner_config: dict,
    learner_connector,
    spaces: tuple = (None, None),
) -> AlgorithmConfig:
    """Our RLModule, learner and learner connector, seed and per-process threads.

    ``spaces`` (observation, action) are needed where no environment gives them (offline)."""
    threads = threads_per_process(config)
    return (
        rllib_config.learners(
            learner_class=learner_class,
            learner_config_dict={**learner_config, "num_learners": config.scale.num_learners},
            num_learners=config.scale.num_learners,
            num_gpus_per_learner=config.scale.num_gpus_per_learner,
            add_default_connectors_to_learner_pipeline=False,
            learner_connector=learner_connector,
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=CausalLMModule,
                observation_space=spaces[0],
                action_space=spaces[1],
                model_config={
                    "model": config.model,
                    "critic": critic,
                    "engine": config.engine,
                    "precision": config.precision,
                    "lora": to_dict(config.lora),
                    "gradient_checkpointing": config.gradient_checkpointing,
                },
            )
        )
        .python_environment(
            extra_python_environs_for_worker={
                "OMP_NUM_THREADS": str(threads),
                "RAY_USAGE_STATS_ENABLED": "0",
            }
        )
        .debugging(seed=config.run.seed, log_level="ERROR")
    )

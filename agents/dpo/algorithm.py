"""Online DPO as an RLlib algorithm: sample k responses per prompt, train on (best, worst).

Each iteration: the same env runners PPO uses sample ``group_size`` responses for each prompt
(the environment scores them and supplies per-token reference log-probs), the learner connector
pairs each group's best and worst response, the DPO learner runs its epochs, and the new weights
go back to the env runners. PPO and DPO share one episode abstraction.
"""

from __future__ import annotations

import functools

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core import ALL_MODULES
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    TIMERS,
)

from agents.algorithm import configure_llm
from agents.config import TrainConfig
from agents.dpo.connector import PreferencePairConnector
from agents.dpo.learner import DPOLearner
from agents.dpo.loss import AVERAGE_LOGPROBS
from agents.module import CausalLMModule


class OnlineDPOConfig(AlgorithmConfig):
    """RLlib config of :class:`OnlineDPO`; ``group_size`` is read by the env runners."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or OnlineDPO)
        self.group_size = 2

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=CausalLMModule, model_config={"critic": "none"})

    def get_default_learner_class(self) -> type:
        return DPOLearner

    def dpo(self, *, group_size: int = NotProvided) -> "OnlineDPOConfig":
        if group_size is not NotProvided:
            if group_size < 2:
                raise ValueError(f"online DPO needs group_size >= 2, got {group_size}")
            self.group_size = group_size
        return self


class OnlineDPO(Algorithm):
    """Sample groups -> DPO update on best/worst pairs -> sync weights."""

    @classmethod
    def get_default_config(cls) -> OnlineDPOConfig:
        return OnlineDPOConfig()

    def training_step(self) -> None:
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                max_env_steps=self.config.train_batch_size_per_learner,
                sample_timeout_s=self.config.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
        self.metrics.aggregate(runner_results, key=ENV_RUNNER_RESULTS)
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(episodes=episodes)
        self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        self.env_runner_group.sync_weights(
            from_worker_or_learner_group=self.learner_group,
            policies=list(set(learner_results[0]) - {ALL_MODULES}),
            inference_only=True,
        )


def build_online_dpo_config(config: TrainConfig) -> OnlineDPOConfig:
    """The RLlib config of online DPO for a training config."""
    dpo = config.dpo
    rllib_config = configure_llm(
        OnlineDPOConfig(), config, critic="none", learner_class=DPOLearner,
        learner_config={"dpo_epochs": dpo.epochs, "minibatch_pairs": dpo.minibatch_pairs,
                        "beta": dpo.beta, "loss_type": dpo.loss_type,
                        "label_smoothing": dpo.label_smoothing},
        learner_connector=functools.partial(
            PreferencePairConnector, average_logprobs=AVERAGE_LOGPROBS[dpo.loss_type]),
    )
    return (
        rllib_config
        .dpo(group_size=dpo.group_size)
        .training(lr=dpo.lr, grad_clip=config.ppo.grad_clip, grad_clip_by="global_norm",
                  train_batch_size_per_learner=dpo.prompts_per_iteration * dpo.group_size
                  * config.task.max_new_tokens)
    )

"""The GRPO family as an RLlib algorithm (docs/formulation.md eqs. 28-38).

Each iteration: the env runners sample ``group_size`` responses for each of
``prompts_per_iteration`` prompts (the same grouped sampling online DPO uses); with dynamic
sampling, groups whose scores all tie (zero advantage, no gradient) are dropped and more prompts
are sampled, for at most ``max_sampling_rounds`` extra rounds (eq. 35); the learner connector
turns each group's scores into advantages (GRPO, Dr. GRPO or RLOO), and the learner runs the
clipped, aggregated policy loss, with the KL to the reference as a k3 term in the loss or in
the environment's reward (eq. 34). With β fixed at 0 no reference model is loaded at all. No
critic. Groups are sharded whole over the learners.

References: Shao et al. 2024 (GRPO), Liu et al. 2025 (Dr. GRPO), Ahmadian et al. 2024 (RLOO),
Yu et al. 2025 (DAPO), Zheng et al. 2025 (GSPO), Yao et al. 2025 (rollout correction).
"""

from __future__ import annotations

import functools

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from agents.core.algorithm import GroupSampledAlgorithm
from agents.core.module import CausalLMModule
from agents.core.training_step import OnlineTrainingStep
from agents.grpo.config import GRPOSettings
from agents.grpo.connector import GroupAdvantageConnector, response_score
from agents.grpo.learner import GRPOLearner


class GRPO(OnlineTrainingStep, Algorithm):
    """Sample groups (dynamic sampling) -> group-relative update -> sync weights."""

    @classmethod
    def get_default_config(cls) -> GRPOConfig:
        return GRPOConfig()

    def sample_units(self, num_episodes: int | None = None):
        units, metrics = super().sample_units(num_episodes)
        if num_episodes is not None or not self.config.dynamic_sampling:
            return units, metrics
        target, k = len(units), self.config.group_size
        kept = [unit for unit in units if self._informative(unit)]
        dropped, rounds = len(units) - len(kept), 0
        while len(kept) < target and rounds < self.config.max_sampling_rounds:
            per_call = self.config.num_envs_per_env_runner
            missing = -(-(target - len(kept)) * k // per_call) * per_call  # whole runner calls
            more, more_metrics = super().sample_units(missing)
            metrics += more_metrics
            kept += [unit for unit in more if self._informative(unit)]
            dropped += sum(not self._informative(unit) for unit in more)
            rounds += 1
        learners = max(1, self.config.num_learners)
        kept = kept[:target][: len(kept[:target]) // learners * learners]  # an equal share each
        self.metrics.log_value("grpo/dropped_groups", dropped, reduce="sum")
        self.metrics.log_value("grpo/sampling_rounds", 1 + rounds, reduce="sum")
        return kept, metrics

    def _informative(self, group) -> bool:
        """Whether a group's scores differ (eq. 35): only then do its advantages."""
        return len({response_score(e, self.config.use_return) for e in group}) > 1


class GRPOConfig(AlgorithmConfig):
    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or GRPO)
        self.dynamic_sampling, self.max_sampling_rounds, self.use_return = True, 3, False

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=CausalLMModule, model_config={"critic": "none"})

    def get_default_learner_class(self) -> type:
        return GRPOLearner


class GRPOAlgorithm(GroupSampledAlgorithm):
    def kl_in_reward(self, config) -> bool:
        return config.algo.kl_in == "reward"

    def needs_reference(self, config) -> bool:
        """β fixed at 0: no KL anywhere, so the environments load no reference model."""
        return not (config.kl.controller == "fixed" and config.initial_kl_coef == 0)

    def validate(self, config) -> None:
        super().validate(config)
        self.require_even_split(config, "minibatch_groups")

    def rllib_config(self, config) -> GRPOConfig:
        grpo = config.algo
        reference = self.needs_reference(config)
        rllib_config = self.configure_online(
            GRPOConfig(),
            config,
            group_size=grpo.group_size,
            critic="none",
            learner_class=GRPOLearner,
            learner_config={
                "epochs": grpo.epochs,
                "minibatch_groups": grpo.minibatch_groups,
                "group_size": grpo.group_size,
                "clip_low": grpo.clip_low,
                "clip_high": grpo.clip_high,
                "aggregation": grpo.aggregation,
                "sequence_ratio": grpo.sequence_ratio,
                "max_tokens": config.task.setting("max_new_tokens"),
                "kl_in": grpo.kl_in,
                "reference": reference,
                "correction": grpo.correction,
                "correction_cap": grpo.correction_cap,
            },
            learner_connector=functools.partial(
                GroupAdvantageConnector,
                advantage=grpo.advantage,
                use_return=self.kl_in_reward(config),
            ),
            env_overrides={} if reference else {"reference": False},
        )
        rllib_config.dynamic_sampling = grpo.dynamic_sampling
        rllib_config.max_sampling_rounds = grpo.max_sampling_rounds
        rllib_config.use_return = self.kl_in_reward(config)
        return rllib_config.training(
            lr=grpo.lr,
            grad_clip=grpo.grad_clip,
            grad_clip_by="global_norm",
            train_batch_size_per_learner=self.episodes_per_iteration(config),
        )


GRPO_FAMILY = GRPOAlgorithm("grpo", "grpo", GRPOSettings)

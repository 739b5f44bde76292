"""Online DPO as an RLlib algorithm: sample k responses per prompt, train on (best, worst).

Each iteration: the env runners PPO uses sample ``group_size`` responses for each of
``prompts_per_iteration`` prompts (the environment scores them and supplies per-token reference
log-probs); the learner connector pairs each group's best and worst response
(docs/formulation.md eq. 26); the DPO learner runs its epochs with the KL term of eq. 27; the
new weights go back to the env runners. Groups are sharded whole over the learners. PPO and DPO
share one episode abstraction (Guo et al. 2024, "Direct Language Model Alignment from Online AI
Feedback").
"""

from __future__ import annotations

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from agents.core.algorithm import GroupSampledAlgorithm
from agents.core.module import CausalLMModule
from agents.core.training_step import OnlineTrainingStep
from agents.dpo.config import OnlineDPOSettings
from agents.dpo.connector import PreferencePairConnector
from agents.dpo.learner import DPOLearner


class OnlineDPO(OnlineTrainingStep, Algorithm):
    """Sample groups -> DPO update on best/worst pairs -> sync weights."""

    @classmethod
    def get_default_config(cls) -> OnlineDPOConfig:
        return OnlineDPOConfig()


class OnlineDPOConfig(AlgorithmConfig):
    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or OnlineDPO)

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=CausalLMModule, model_config={"critic": "none"})

    def get_default_learner_class(self) -> type:
        return DPOLearner


class OnlineDPOAlgorithm(GroupSampledAlgorithm):
    def rllib_config(self, config) -> OnlineDPOConfig:
        dpo = config.algo
        rllib_config = self.configure_online(
            OnlineDPOConfig(),
            config,
            group_size=dpo.group_size,
            critic="none",
            learner_class=DPOLearner,
            learner_config=dpo.learner_config(),
            learner_connector=PreferencePairConnector,
        )
        return rllib_config.training(
            lr=dpo.lr,
            grad_clip=dpo.grad_clip,
            grad_clip_by="global_norm",
            train_batch_size_per_learner=self.episodes_per_iteration(config),
        )


ONLINE_DPO = OnlineDPOAlgorithm("dpo_online", "dpo", OnlineDPOSettings)

"""Offline DPO as an RLlib algorithm on a pair table (docs/formulation.md eqs. 22-25).

Before training, the frozen reference scores every preference pair once
(:mod:`agents.dpo.offline_data`), into ``<run>/offline_data/{train,test}.parquet``. RLlib holds
the training table as the algorithm's offline data (``offline_data_class``: :class:`PairTable`,
read in one fixed, seeded order), and each iteration hands ``pairs_per_iteration`` pairs, as
chosen-first rows, to the same DPO learner online DPO uses, sharded evenly over the learners.
The reference model is never loaded during training. Held-out evaluation adds the
implicit-reward accuracy, margin and loss on the held-out pairs.
"""

from __future__ import annotations

from pathlib import Path

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.offline.offline_data import OfflineData
from ray.rllib.utils.checkpoints import Checkpointable
from ray.rllib.utils.metrics import LEARNER_RESULTS, LEARNER_UPDATE_TIMER, TIMERS

from agents.core.algorithm import LLMAlgorithm, configure_module_and_learner
from agents.core.module import CausalLMModule
from agents.core.training_step import update_on_rows
from agents.dpo.config import OfflineDPOSettings
from agents.dpo.learner import DPOLearner
from agents.dpo.offline_data import (
    PROMPT_IDS,
    PairTable,
    build_pair_table,
    pair_rows,
    preference_metrics,
    write_table,
)

OFFLINE_DATA = "offline_data"


class OfflineDPO(Algorithm):
    """Read the iteration's pairs -> DPO update (no env runners, no reference model)."""

    @classmethod
    def get_default_config(cls) -> OfflineDPOConfig:
        return OfflineDPOConfig()

    def training_step(self) -> None:
        pairs = self.offline_data.batch(self.iteration, self.config.pairs_per_iteration)
        shards = max(1, self.config.num_learners)
        size = self.config.pairs_per_iteration // shards
        rows = [
            pair_rows({name: values[i * size : (i + 1) * size] for name, values in pairs.items()})
            for i in range(shards)
        ]
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            results = update_on_rows(self.learner_group, rows)
        self.metrics.aggregate(results, key=LEARNER_RESULTS)

    def restore_from_path(self, path, *args, **kwargs):
        # Algorithm.restore_from_path then syncs the env runners, which offline training does
        # not have (RLlib 2.60 fails on None); restore the components only. The pairs an
        # iteration reads follow from the restored iteration number.
        Checkpointable.restore_from_path(self, path, *args, **kwargs)


class OfflineDPOConfig(AlgorithmConfig):
    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or OfflineDPO)
        self._is_online = False  # no env runners (as RLlib's MARWIL and BC)
        self.pairs_per_iteration = 32

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=CausalLMModule, model_config={"critic": "none"})

    def get_default_learner_class(self) -> type:
        return DPOLearner

    def build_learner_connector(self, input_observation_space, input_action_space, device=None):
        # The rows are made before the update: no episode connectors.
        return AlgorithmConfig.build_learner_connector(
            self, input_observation_space, input_action_space, device
        )


class PairTableData(OfflineData):
    """RLlib's offline data of the algorithm: the :class:`PairTable` at the config's input.

    RLlib requires an ``OfflineData`` subclass; its Ray Data reading (``__init__``, ``sample``)
    is replaced by the pair table's fixed, seeded order, which makes resume exact with any
    number of learners (Ray Data's streaming splits are not resumable).
    """

    def __init__(self, config: AlgorithmConfig):  # noqa: D107  (no Ray Data dataset)
        self.config = config
        self.table = PairTable(config.input_[0])

    def batch(self, iteration: int, size: int) -> dict[str, list]:
        return self.table.batch(iteration, size)


class OfflineDPOAlgorithm(LLMAlgorithm):
    def validate(self, config) -> None:
        self.require_even_split(config, "pairs_per_iteration", "minibatch_pairs")

    def table_paths(self, config) -> dict[str, Path]:
        return {
            split: config.run_dir / OFFLINE_DATA / f"{split}.parquet" for split in ("train", "test")
        }

    def prepare(self, config) -> None:
        """Build (once per run folder) the train and held-out pair tables."""
        from rlhf_env.data.models import load_causal_lm, load_tokenizer
        from rlhf_env.data.preferences import load_preferences

        dpo = config.algo
        missing = {
            split: path for split, path in self.table_paths(config).items() if not path.exists()
        }
        if not missing:
            return
        tokenizer, reference = load_tokenizer(config.model), load_causal_lm(config.model)
        for split, path in missing.items():
            write_table(
                build_pair_table(
                    load_preferences(dpo.dataset, split=split),
                    tokenizer,
                    reference,
                    max_prompt_tokens=dpo.max_prompt_tokens,
                    max_response_tokens=dpo.max_response_tokens,
                    max_pairs=dpo.max_pairs if split == "train" else dpo.eval_pairs,
                    seed=config.run.seed,
                ),
                path,
            )

    def rllib_config(self, config) -> OfflineDPOConfig:
        import gymnasium as gym
        import pyarrow.parquet as pq

        from rlhf_env.data.models import load_tokenizer
        from rlhf_env.envs.env import observation_space

        dpo = config.algo
        train_path = self.table_paths(config)["train"]
        prompts = pq.read_table(train_path, columns=[PROMPT_IDS]).column(PROMPT_IDS)
        vocab_size = len(load_tokenizer(config.model))
        # The spaces of the task's environment (no environment is built offline); only their
        # types matter to RLlib, the rows' widths come with each batch.
        spaces = (
            observation_space(vocab_size, max(len(p) for p in prompts.to_pylist()) + 1),
            gym.spaces.Discrete(vocab_size),
        )
        rllib_config = configure_module_and_learner(
            OfflineDPOConfig(),
            config,
            critic="none",
            learner_class=DPOLearner,
            learner_config=dpo.learner_config(),
            learner_connector=None,
            spaces=spaces,
        )
        rllib_config.pairs_per_iteration = dpo.pairs_per_iteration
        return (
            rllib_config.environment(observation_space=spaces[0], action_space=spaces[1])
            .offline_data(input_=[str(train_path.resolve())], offline_data_class=PairTableData)
            .training(
                lr=dpo.lr,
                grad_clip=dpo.grad_clip,
                grad_clip_by="global_norm",
                train_batch_size_per_learner=dpo.pairs_per_iteration,
            )
        )

    def extra_evaluation(self, config):
        import pyarrow.parquet as pq

        dpo = config.algo
        table = pq.read_table(self.table_paths(config)["test"])
        return lambda policy: preference_metrics(
            policy, table, beta=dpo.beta, loss_type=dpo.loss_type
        )


OFFLINE_DPO = OfflineDPOAlgorithm("dpo_offline", "dpo", OfflineDPOSettings)

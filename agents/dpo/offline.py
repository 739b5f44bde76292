"""Offline DPO on RLlib's offline data path.

The pair table (:mod:`agents.dpo.offline_data`: token ids plus reference log-probs computed once
per pair) is read by RLlib's ``OfflineData`` with ``ray.data.read_parquet``; our
``PreferencePreLearner`` turns each block of pairs into fixed-width padded rows (one row per
pair, chosen and rejected side by side), and RLlib's BC/MARWIL training step feeds
``pairs_per_iteration`` pairs per iteration to ``OfflineDPOLearner``, which stacks them into the
chosen-first rows of :class:`agents.dpo.learner.DPOLearner` and runs the same DPO (or IPO) loss
as online DPO. The reference model is never loaded during training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.bc import BC, BCConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.checkpoints import Checkpointable

from agents.config import TrainConfig
from agents.dpo.learner import DPOLearner
from agents.dpo.prelearner import ROW_KEYS, SIDES, PreferencePreLearner
from agents.dpo.rows import REF_LOGPS
from agents.dpo.loss import AVERAGE_LOGPROBS
from agents.dpo.offline_data import (
    CHOSEN_IDS,
    PROMPT_IDS,
    REF_CHOSEN,
    REF_REJECTED,
    REJECTED_IDS,
    build_pair_table,
    widths,
    write_table,
)
from agents.module import CausalLMModule
from agents.rows import ACTIONS, ATTENTION_MASK, INPUT_IDS, LOSS_MASK, PROMPT_WIDTH, pad_rows

OFFLINE_DATA = "offline_data"


class OfflineDPOLearner(DPOLearner):
    """DPO on pair rows from :class:`PreferencePreLearner`: stacked chosen-first, padding cut."""

    def _update(self, batch: dict[str, Any]):
        return super()._update({DEFAULT_MODULE_ID: stack_pairs(batch[DEFAULT_MODULE_ID])})


def stack_pairs(pairs) -> dict[str, torch.Tensor]:
    """N pair rows -> 2N rows (chosen first), without the columns that are padding in all rows."""
    rows = {key: torch.cat([torch.as_tensor(np.asarray(pairs[f"{side}_{key}"])) for side in SIDES])
            for key in (*ROW_KEYS, REF_LOGPS)}
    width = rows[INPUT_IDS].shape[1] - rows[ACTIONS].shape[1]
    real = rows[ATTENTION_MASK].bool().any(0)
    first = int(real[:width].long().argmax())  # first prompt column with a real token
    last = int(rows[LOSS_MASK].bool().any(0).nonzero().max()) + 1  # response columns in use
    rows[INPUT_IDS] = rows[INPUT_IDS][:, first : width + last]
    rows[ATTENTION_MASK] = rows[ATTENTION_MASK][:, first : width + last]
    rows[ACTIONS], rows[LOSS_MASK] = rows[ACTIONS][:, :last], rows[LOSS_MASK][:, :last].bool()
    rows[PROMPT_WIDTH] = torch.full((len(rows[ACTIONS]),), width - first, dtype=torch.long)
    return rows


class OfflineDPO(BC):
    """BC's training step (read ``train_batch_size_per_learner`` pairs, update) for DPO."""

    @classmethod
    def get_default_config(cls) -> "OfflineDPOConfig":
        return OfflineDPOConfig()

    def setup(self, config) -> None:
        # Ray Data may reorder blocks unless told not to; the pairs must come in the table's
        # (seeded, shuffled) order for a resumed run to read what the uninterrupted one would.
        import ray.data

        ray.data.DataContext.get_current().execution_options.preserve_order = True
        super().setup(config)

    def restore_from_path(self, path, *args, **kwargs):
        # Algorithm.restore_from_path then syncs the env runners, which offline training does
        # not have (RLlib 2.60 fails on None); restore the components only.
        Checkpointable.restore_from_path(self, path, *args, **kwargs)
        # The data iterator is not part of RLlib's state: read past the batches the restored
        # iterations consumed, so that the run goes on with the batch it would have read next
        # (a local learner reads single batches; remote learners get iterators, which restart).
        if self.config.num_learners == 0:
            for _ in range(self.iteration):
                self.offline_data.sample(num_samples=self.config.train_batch_size_per_learner,
                                         num_shards=0)


class OfflineDPOConfig(BCConfig):
    """BC's offline data path and training step, with our module, learner and pre-learner."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or OfflineDPO)

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=CausalLMModule, model_config={"critic": "none"})

    def get_default_learner_class(self) -> type:
        return OfflineDPOLearner

    def build_learner_connector(self, input_observation_space, input_action_space, device=None):
        # The pre-learner already made the train batch: no episode connectors (BC and MARWIL
        # would add observation, next-observation and GAE pieces).
        return AlgorithmConfig.build_learner_connector(
            self, input_observation_space, input_action_space, device)


def prepare_pair_tables(config: TrainConfig) -> dict[str, Path]:
    """Build (once per run folder) the train and held-out pair tables; return their paths."""
    from rewards.preferences import load_preferences
    from rlhf_env.models import load_causal_lm, load_tokenizer

    dpo = config.dpo
    paths = {split: config.run_dir / OFFLINE_DATA / f"{split}.parquet"
             for split in ("train", "test")}
    missing = [split for split, path in paths.items() if not path.exists()]
    if missing:
        tokenizer = load_tokenizer(config.task.model)
        reference = load_causal_lm(config.task.model).eval()
        for split in missing:
            table = build_pair_table(
                load_preferences(dpo.dataset, split=split), tokenizer, reference,
                max_prompt_tokens=dpo.max_prompt_tokens,
                max_response_tokens=dpo.max_response_tokens,
                max_pairs=dpo.max_pairs if split == "train" else dpo.eval_pairs,
                seed=config.run.seed)
            write_table(table, paths[split])
    return paths


def build_offline_dpo_config(config: TrainConfig) -> OfflineDPOConfig:
    """The RLlib config of offline DPO on the run's pair tables (built first if missing)."""
    import gymnasium as gym
    import pyarrow.parquet as pq

    from agents.algorithm import configure_module_and_learner
    from rlhf_env.env import observation_space
    from rlhf_env.models import load_tokenizer

    dpo = config.dpo
    train_path = prepare_pair_tables(config)["train"]
    prompt_width, response_width = widths(pq.read_table(train_path))
    vocab_size = len(load_tokenizer(config.task.model))
    # The spaces of the task's environment (no environment is built offline).
    spaces = (observation_space(vocab_size, prompt_width + response_width),
              gym.spaces.Discrete(vocab_size))
    rllib_config = configure_module_and_learner(
        OfflineDPOConfig(), config, critic="none", learner_class=OfflineDPOLearner,
        learner_config={"dpo_epochs": dpo.epochs, "minibatch_pairs": dpo.minibatch_pairs,
                        "beta": dpo.beta, "loss_type": dpo.loss_type,
                        "label_smoothing": dpo.label_smoothing,
                        "prompt_width": prompt_width, "response_width": response_width},
        learner_connector=None, spaces=spaces,
    )
    return (
        rllib_config
        .environment(observation_space=spaces[0], action_space=spaces[1])
        .offline_data(input_=[str(train_path.resolve())], input_read_method="read_parquet",
                      prelearner_class=PreferencePreLearner, dataset_num_iters_per_learner=1,
                      map_batches_kwargs={"concurrency": 1})
        .training(lr=dpo.lr, grad_clip=config.ppo.grad_clip, grad_clip_by="global_norm",
                  train_batch_size_per_learner=dpo.pairs_per_iteration)
    )

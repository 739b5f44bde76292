"""The offline DPO pre-learner, in a module of its own: Ray Data starts it in a fresh worker
process, which then imports only this (numpy, torch and RLlib's base class), not the LLM stack."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.offline.offline_prelearner import OfflinePreLearner

from agents.dpo.loss import AVERAGE_LOGPROBS
from agents.dpo.offline_data import CHOSEN_IDS, PROMPT_IDS, REF_CHOSEN, REF_REJECTED, REJECTED_IDS
from agents.dpo.rows import REF_LOGPS
from agents.rows import ACTIONS, ATTENTION_MASK, INPUT_IDS, LOSS_MASK, pad_rows

if TYPE_CHECKING:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

ROW_KEYS = (INPUT_IDS, ATTENTION_MASK, ACTIONS, LOSS_MASK)
SIDES = ("chosen", "rejected")


class PreferencePreLearner(OfflinePreLearner):
    """Pairs (parquet columns) -> one fixed-width padded row per pair, chosen and rejected.

    The widths (P, T) are the table's longest prompt and response (``learner_config_dict``), so
    every block has one shape and Ray Data may re-batch blocks freely. The stock pre-learner
    builds the RLModule (here a whole LLM) in every data worker to run the learner connector on
    episodes; pairs need neither, so this one builds nothing.
    """

    def __init__(self, *, config: AlgorithmConfig, spaces=None, module_state=None, **kwargs):
        self.config = config
        settings = config.learner_config_dict
        self.widths = (settings["prompt_width"], settings["response_width"])
        self.average = AVERAGE_LOGPROBS[settings["loss_type"]]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prompts = [np.asarray(ids) for ids in batch[PROMPT_IDS]]
        out = {}
        for side, ids_column, ref_column in (("chosen", CHOSEN_IDS, REF_CHOSEN),
                                             ("rejected", REJECTED_IDS, REF_REJECTED)):
            responses = [np.asarray(ids) for ids in batch[ids_column]]
            rows = pad_rows(prompts, responses, widths=self.widths)
            for key in ROW_KEYS:
                out[f"{DEFAULT_MODULE_ID}/{side}_{key}"] = rows[key].numpy()
            ref = np.asarray(batch[ref_column], dtype=np.float32)
            if self.average:
                ref = ref / np.array([len(r) for r in responses], dtype=np.float32)
            out[f"{DEFAULT_MODULE_ID}/{side}_{REF_LOGPS}"] = ref
        return out

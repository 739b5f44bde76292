"""DPO's learner: SPEC.md section 2 DPO (or IPO) loss on (chosen, rejected) row pairs.

Rows arrive chosen-first (``preference_rows``: rows 0..N-1 chosen, N..2N-1 rejected); a
minibatch unit is a pair, so both rows of a pair always share a minibatch. One forward over the
minibatch's rows gives log π_θ of every response; the reference log-probs come with the batch.
"""

from __future__ import annotations

import numpy as np
from ray.rllib.core.columns import Columns

from agents.dpo.rows import REF_LOGPS
from agents.dpo.loss import AVERAGE_LOGPROBS, dpo_loss, sequence_logprobs
from agents.learner import RowMinibatchLearner


class DPOLearner(RowMinibatchLearner):
    """Direct preference optimisation against a frozen reference, on pairs of rows."""

    epochs_key = "dpo_epochs"
    minibatch_key = "minibatch_pairs"

    def num_units(self, rows) -> int:
        return len(rows[Columns.ACTIONS]) // 2

    def unit_rows(self, units: np.ndarray, rows) -> np.ndarray:
        return np.concatenate([units, units + self.num_units(rows)])

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        dpo = config.learner_config_dict
        logps = sequence_logprobs(fwd_out[Columns.ACTION_DIST_INPUTS], batch[Columns.ACTIONS],
                                  batch[Columns.LOSS_MASK],
                                  average=AVERAGE_LOGPROBS[dpo["loss_type"]])
        chosen, rejected = logps.chunk(2)
        ref_chosen, ref_rejected = batch[REF_LOGPS].chunk(2)
        loss, stats = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=dpo["beta"],
                               loss_type=dpo["loss_type"],
                               label_smoothing=dpo["label_smoothing"])
        self.metrics.log_dict({f"dpo/{k}": float(v) for k, v in stats.items()},
                              key=module_id, reduce="mean")
        return loss

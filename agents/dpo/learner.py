"""DPO's learner: SPEC.md section 2 DPO (or IPO) loss on (chosen, rejected) row pairs.

Rows arrive chosen-first (``preference_rows``: rows 0..N-1 chosen, N..2N-1 rejected); a
minibatch unit is a pair, so both rows of a pair always share a minibatch. One forward over the
minibatch's rows gives log π_θ of every response; the reference log-probs come with the batch.
Online batches also carry per-token reference log-probs and the KL controller's β: then the loss
adds β·mean Σ_t k2 (:func:`agents.dpo.loss.kl_penalty`), which holds the policy's KL.
"""

from __future__ import annotations

import numpy as np
from ray.rllib.core.columns import Columns

from agents.dpo.loss import (AVERAGE_LOGPROBS, dpo_loss, kl_penalty, summed_logprobs,
                             token_logprobs)
from agents.dpo.rows import KL_COEF, REF_LOGPS, REF_TOKEN_LOGPS
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
        mask = batch[Columns.LOSS_MASK]
        token_logps = token_logprobs(fwd_out[Columns.ACTION_DIST_INPUTS], batch[Columns.ACTIONS],
                                     mask)
        logps = summed_logprobs(token_logps, mask, average=AVERAGE_LOGPROBS[dpo["loss_type"]])
        chosen, rejected = logps.chunk(2)
        ref_chosen, ref_rejected = batch[REF_LOGPS].chunk(2)
        loss, stats = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=dpo["beta"],
                               loss_type=dpo["loss_type"],
                               label_smoothing=dpo["label_smoothing"])
        if REF_TOKEN_LOGPS in batch:  # online: the KL controller's term
            kl = kl_penalty(token_logps, batch[REF_TOKEN_LOGPS], mask)
            loss = loss + (batch[KL_COEF] * kl).mean()
            stats.update({"kl_penalty": kl.detach().mean(), "kl_coef": batch[KL_COEF].mean()})
        self.metrics.log_dict({f"dpo/{k}": float(v) for k, v in stats.items()},
                              key=module_id, reduce="mean")
        return loss

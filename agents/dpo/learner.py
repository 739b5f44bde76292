"""DPO's learner: the DPO (or IPO) loss on (chosen, rejected) row pairs, plus the KL term
(docs/formulation.md eqs. 22-27), online and offline alike.

Rows arrive chosen-first (:func:`agents.dpo.rows.preference_rows`: rows 0..N-1 chosen, N..2N-1
rejected); a minibatch unit is a pair, so both rows of a pair always share a minibatch. One
forward over the minibatch's rows gives log π_θ of every response token; the reference's
per-token log-probs come with the batch. The loss is the weighted mean over the global
minibatch's pairs, plus β·mean Σ_t k2 over its rows (:func:`agents.dpo.loss.kl_penalty`, β = 0
offline), which holds the policy's KL online.
"""

from __future__ import annotations

import numpy as np

from agents.core.columns import (
    ACTION_DIST_INPUTS,
    ACTIONS,
    KL_COEF,
    LOSS_MASK,
    PAIR_WEIGHT,
    REF_LOGP,
)
from agents.core.learner import RowMinibatchLearner
from agents.dpo.loss import AVERAGE_LOGPROBS, dpo_loss, kl_penalty
from rlhf_env.data.ops import summed_logprobs, token_logprobs


class DPOLearner(RowMinibatchLearner):
    """Direct preference optimisation against a frozen reference, on pairs of rows."""

    minibatch_key = "minibatch_pairs"

    def num_units(self, rows) -> int:
        return len(rows[ACTIONS]) // 2

    def unit_rows(self, units: np.ndarray, rows) -> np.ndarray:
        return np.concatenate([units, units + self.num_units(rows)])

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        dpo = config.learner_config_dict
        mask = batch[LOSS_MASK]
        average = AVERAGE_LOGPROBS[dpo["loss_type"]]
        token_logps = token_logprobs(fwd_out[ACTION_DIST_INPUTS], batch[ACTIONS], mask)
        chosen, rejected = summed_logprobs(token_logps, mask, average).chunk(2)
        ref_chosen, ref_rejected = summed_logprobs(batch[REF_LOGP], mask, average).chunk(2)
        weights = batch[PAIR_WEIGHT].chunk(2)[0]
        loss, stats = dpo_loss(
            chosen,
            rejected,
            ref_chosen,
            ref_rejected,
            beta=dpo["beta"],
            loss_type=dpo["loss_type"],
            label_smoothing=dpo["label_smoothing"],
            weights=weights,
            denominator=self.mean_denominator(weights.sum()),
        )
        kl = kl_penalty(token_logps, batch[REF_LOGP], mask)
        loss = loss + (batch[KL_COEF] * kl).sum() / self.mean_denominator(len(kl))
        stats.update({"kl_penalty": kl.detach().mean(), "kl_coef": batch[KL_COEF].mean()})
        # A minibatch whose pairs all tied has no pair statistics (NaN): none are logged.
        self.metrics.log_dict(
            {f"dpo/{k}": float(v) for k, v in stats.items() if v == v}, key=module_id, reduce="mean"
        )
        return loss

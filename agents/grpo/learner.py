"""The GRPO family's learner: the loss of docs/formulation.md eqs. 31-34 on whole responses.

Rows arrive group after group (:mod:`agents.grpo.connector`); a minibatch unit is a group, so a
group's responses always share a minibatch. One forward per minibatch gives log π_θ of every
response token; the anchor of the ratio is the sampler's log-prob (or, under a rollout
correction, the learner's recomputed one, with its importance weights). The normaliser of the
chosen aggregation counts the global minibatch's tokens or sequences across learners.
"""

from __future__ import annotations

import numpy as np
import torch

from agents.core.columns import (
    ACTION_DIST_INPUTS,
    ACTIONS,
    ADVANTAGES,
    IS_WEIGHT,
    KL_COEF,
    LOSS_MASK,
    REF_LOGP,
)
from agents.core.learner import RowMinibatchLearner
from agents.core.masked import masked_mean
from agents.grpo.loss import grpo_loss
from rlhf_env.data.ops import entropy, token_logprobs


class GRPOLearner(RowMinibatchLearner):
    """Group-relative policy optimisation, critic-free."""

    minibatch_key = "minibatch_groups"

    def num_units(self, rows) -> int:
        return len(rows[ACTIONS]) // self.config.learner_config_dict["group_size"]

    def unit_rows(self, units: np.ndarray, rows) -> np.ndarray:
        k = self.config.learner_config_dict["group_size"]
        return (units[:, None] * k + np.arange(k)).reshape(-1)

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        grpo = config.learner_config_dict
        logits, mask = fwd_out[ACTION_DIST_INPUTS], batch[LOSS_MASK]
        logprobs = token_logprobs(logits, batch[ACTIONS], mask)
        self.log_sampler_mismatch(logprobs, batch)
        per_token = grpo["aggregation"] == "token" and not grpo["sequence_ratio"]
        count = mask.sum() if per_token else torch.tensor(float(len(mask)))
        kl_in_loss = grpo["kl_in"] == "loss" and grpo["reference"]
        loss, stats = grpo_loss(
            logprobs,
            self.old_logprobs(batch),
            batch[ADVANTAGES],
            mask,
            clip_low=grpo["clip_low"],
            clip_high=grpo["clip_high"],
            aggregation=grpo["aggregation"],
            sequence_ratio=grpo["sequence_ratio"],
            max_tokens=grpo["max_tokens"],
            ref_logprobs=batch[REF_LOGP] if grpo["reference"] else None,
            kl_coef=float(batch[KL_COEF][0]) if kl_in_loss else 0.0,
            weights=batch.get(IS_WEIGHT),
            denominator=self.mean_denominator(count),
        )
        with torch.no_grad():
            stats["entropy"] = masked_mean(entropy(logits), mask)
        self.metrics.log_dict(
            {f"grpo/{k}": v.item() for k, v in stats.items()}, key=module_id, reduce="mean"
        )
        return loss

"""PPO's learner for LLM policies: docs/formulation.md eqs. 11-15 on whole-episode rows.

Each minibatch is one forward per episode row: logits and values of every response token, the
clipped surrogate, the (optionally clipped) value loss and the entropy bonus, means over the
real tokens of the global minibatch. Epochs over minibatches of rows (episodes are never split)
come from :class:`~agents.core.learner.RowMinibatchLearner`.
"""

from __future__ import annotations

import torch

from agents.core.columns import (
    ACTION_DIST_INPUTS,
    ACTIONS,
    ADVANTAGES,
    IS_WEIGHT,
    LOSS_MASK,
    VALUE_TARGETS,
    VALUES,
    VF_PREDS,
)
from agents.core.learner import RowMinibatchLearner
from agents.ppo.loss import ppo_loss
from rlhf_env.data.ops import entropy, token_logprobs


class LLMPPOLearner(RowMinibatchLearner):
    """Clipped-surrogate PPO with a value loss and optional entropy bonus, per token."""

    minibatch_key = "minibatch_episodes"

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        ppo = config.learner_config_dict
        logits, mask = fwd_out[ACTION_DIST_INPUTS], batch[LOSS_MASK]
        logprobs = token_logprobs(logits, batch[ACTIONS], mask)
        # The entropy is only logged unless it has a weight: no graph for it then.
        with torch.set_grad_enabled(ppo["entropy_coef"] > 0 and torch.is_grad_enabled()):
            token_entropy = entropy(logits)
        self.log_sampler_mismatch(logprobs, batch)
        loss, stats = ppo_loss(
            logprobs,
            self.old_logprobs(batch),
            batch[ADVANTAGES],
            fwd_out[VALUES],
            batch[VF_PREDS],
            batch[VALUE_TARGETS],
            mask,
            token_entropy,
            clip_eps=ppo["clip_eps"],
            vf_coef=ppo["vf_coef"],
            ent_coef=ppo["entropy_coef"],
            value_clip=ppo["value_clip"],
            denominator=self.mean_denominator(mask.sum()),
            weights=batch.get(IS_WEIGHT),
        )
        self.metrics.log_dict(
            {f"losses/{k}": v.item() for k, v in stats.items()}, key=module_id, reduce="mean"
        )
        return loss

"""PPO's learner for LLM policies: SPEC.md section 2 losses on whole-episode rows.

Each minibatch is one forward per episode row: logits and values of every response token, the
clipped surrogate, the (optionally clipped) value loss and the entropy bonus. Epochs over
minibatches of rows (episodes are never split) come from :class:`RowMinibatchLearner`.
"""

from __future__ import annotations

from ray.rllib.core.columns import Columns

from agents.learner import RowMinibatchLearner
from agents.module import VALUES
from agents.ppo.loss import ppo_loss, token_logprobs_and_entropy


class LLMPPOLearner(RowMinibatchLearner):
    """Clipped-surrogate PPO with a value loss and optional entropy bonus, per token."""

    epochs_key = "ppo_epochs"
    minibatch_key = "minibatch_rows"

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        ppo = config.learner_config_dict
        logprobs, entropy = token_logprobs_and_entropy(
            fwd_out[Columns.ACTION_DIST_INPUTS], batch[Columns.ACTIONS],
            entropy_grad=ppo["entropy_coef"] > 0,
        )
        loss, stats = ppo_loss(
            logprobs, batch[Columns.ACTION_LOGP], batch[Columns.ADVANTAGES], fwd_out[VALUES],
            batch[Columns.VF_PREDS], batch[Columns.VALUE_TARGETS], batch[Columns.LOSS_MASK],
            entropy, clip_eps=ppo["clip_eps"], vf_coef=ppo["vf_coef"],
            ent_coef=ppo["entropy_coef"], value_clip=ppo["value_clip"],
        )
        self.metrics.log_dict({f"losses/{k}": v.item() for k, v in stats.items()},
                              key=module_id, reduce="mean")
        return loss

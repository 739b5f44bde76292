"""PPO's learner for LLM policies: SPEC.md section 2 losses on whole-episode rows.

RLlib hands the learner the whole train batch at once (``minibatch_size=None``); this learner
runs PPO's epochs over it in minibatches of rows (episodes are never split), shuffled with a
seeded generator whose position is part of the learner's state, so resumed runs see the same
minibatches. Each minibatch is one forward per row: logits and values of every response token.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from agents.module import VALUES
from agents.ppo.loss import ppo_loss, token_logprobs_and_entropy

UPDATES = "ppo_updates"


class LLMPPOLearner(TorchLearner):
    """Clipped-surrogate PPO with a value loss and optional entropy bonus, per token."""

    def build(self) -> None:
        super().build()
        self._updates = 0

    def _update(self, batch: dict[str, Any]):
        ppo = self.config.learner_config_dict
        rows = batch[DEFAULT_MODULE_ID]
        n = len(rows[Columns.ACTIONS])
        rng = np.random.default_rng([self.config.seed or 0, self._updates])
        self._updates += 1
        for _ in range(ppo["ppo_epochs"]):
            order = rng.permutation(n)
            for start in range(0, n, ppo["minibatch_rows"]):
                index = order[start : start + ppo["minibatch_rows"]]
                minibatch = {DEFAULT_MODULE_ID: {key: value[index] for key, value in rows.items()}}
                fwd_out, losses, _ = self._uncompiled_update(minibatch)
        return fwd_out, losses, {}

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

    def get_state(self, *args, **kwargs) -> dict[str, Any]:
        state = super().get_state(*args, **kwargs)
        state[UPDATES] = self._updates
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self._updates = state.get(UPDATES, self._updates)
        super().set_state(state)

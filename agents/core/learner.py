"""A torch learner that runs several epochs over minibatches of whole rows, reproducibly, alone
or as one of several data-parallel learners.

RLlib hands the learner its whole share of the iteration's batch at once; subclasses say what
one minibatch unit is (an episode row for PPO, a chosen/rejected pair of rows for DPO) and this
base runs ``epochs`` over shuffled minibatches of units. The shuffle generator's position is
part of the learner's state, so a resumed run sees the same minibatches as an uninterrupted one.

With a rollout ``correction`` in the learner config (PPO, GRPO), the learner first recomputes
the log-probs of every sampled token with the weights that sampled them (``LEARNER_LOGP``, the
anchor of the ratio) and the importance weights against the sampler's (``IS_WEIGHT``,
:mod:`agents.core.correction`); without one, the first minibatch of each update (still at the
sampling weights) measures ``rollout/logprob_abs_diff``, the sampler-learner mismatch.

With N learners (``num_learners`` in the learner config) each holds 1/N of the units and takes
minibatches of ``minibatch / N`` units, so all learners run the same number of steps; RLlib's
DDP wrapper averages their gradients. A loss that is a mean over tokens (or pairs) of the global
minibatch divides its local sum by :meth:`RowMinibatchLearner.mean_denominator` of its local
count, which makes the averaged gradient that of the global mean: one update on N learners
equals one update on one learner with the same data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from agents.core.columns import (
    ACTION_DIST_INPUTS,
    ACTION_LOGP,
    ACTIONS,
    IS_WEIGHT,
    LEARNER_LOGP,
    LOSS_MASK,
)
from agents.core.correction import importance_weights
from agents.core.masked import masked_mean
from rlhf_env.data.ops import token_logprobs

UPDATES = "row_minibatch_updates"


class RowMinibatchLearner(TorchLearner):
    """Epochs over minibatches of units of rows; see the module docstring."""

    epochs_key = "epochs"
    minibatch_key = "minibatch_units"

    def build(self) -> None:
        super().build()
        self._updates = 0
        self._first_minibatch = False

    def num_units(self, rows: dict[str, Any]) -> int:
        """How many minibatch units the rows hold (default: one per row)."""
        return len(next(iter(rows.values())))

    def unit_rows(self, units: np.ndarray, rows: dict[str, Any]) -> np.ndarray:
        """Row indices of the given units (default: unit i is row i)."""
        return units

    @property
    def world_size(self) -> int:
        """How many learners share each update (1 without remote learners)."""
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    def mean_denominator(self, local_count: torch.Tensor | float) -> torch.Tensor:
        """What this learner divides its local sum by, for a mean over the global minibatch:
        the global count over the number of learners (the local count on one learner)."""
        count = torch.as_tensor(local_count, dtype=torch.float32).detach().clone()
        if self.world_size > 1:
            dist.all_reduce(count)
            count = count / self.world_size
        return count.clamp(min=1e-8)

    def old_logprobs(self, batch: dict[str, Any]) -> torch.Tensor:
        """The anchor of the ratio: the learner's recomputed log-probs under a rollout
        correction, else the sampler's."""
        return batch[LEARNER_LOGP] if LEARNER_LOGP in batch else batch[ACTION_LOGP]

    def log_sampler_mismatch(self, logprobs: torch.Tensor, batch: dict[str, Any]) -> None:
        """On an update's first minibatch (the sampling weights), log the mean |log π_learner −
        log π_sampler| of its tokens (docs/formulation.md eq. 38's metric)."""
        if self._first_minibatch and LEARNER_LOGP not in batch:
            diff = masked_mean((logprobs.detach() - batch[ACTION_LOGP]).abs(), batch[LOSS_MASK])
            self.metrics.log_value(
                (DEFAULT_MODULE_ID, "rollout/logprob_abs_diff"), diff.item(), reduce="mean"
            )

    @torch.no_grad()
    def _correct_rollout(self, rows: dict[str, Any], kind: str, cap: float) -> None:
        """Add the learner's log-probs and the importance weights to the rows (see above)."""
        module = self.module[DEFAULT_MODULE_ID].unwrapped()
        chunks = []
        for start in range(0, len(rows[ACTIONS]), 16):
            part = {key: value[start : start + 16] for key, value in rows.items()}
            logits = module.forward_train(part)[ACTION_DIST_INPUTS]
            chunks.append(token_logprobs(logits, part[ACTIONS], part[LOSS_MASK]))
        rows[LEARNER_LOGP] = torch.cat(chunks)
        rows[IS_WEIGHT], stats = importance_weights(
            rows[LEARNER_LOGP], rows[ACTION_LOGP], rows[LOSS_MASK], kind, cap
        )
        for name, value in stats.items():
            self.metrics.log_value(
                (DEFAULT_MODULE_ID, f"rollout/{name}"), value.item(), reduce="mean"
            )

    def _update(self, batch: dict[str, Any]):
        settings = self.config.learner_config_dict
        rows = batch[DEFAULT_MODULE_ID]
        if settings.get("correction", "none") != "none":
            self._correct_rollout(rows, settings["correction"], settings["correction_cap"])
        minibatch = max(1, settings[self.minibatch_key] // max(1, settings["num_learners"]))
        rng = np.random.default_rng([self.config.seed or 0, self._updates])
        self._updates += 1
        self._first_minibatch = True
        for _ in range(settings[self.epochs_key]):
            order = rng.permutation(self.num_units(rows))
            for start in range(0, len(order), minibatch):
                index = torch.as_tensor(self.unit_rows(order[start : start + minibatch], rows))
                minibatch_rows = {key: value[index] for key, value in rows.items()}
                fwd_out, losses, _ = self._uncompiled_update({DEFAULT_MODULE_ID: minibatch_rows})
                self._first_minibatch = False
        return fwd_out, losses, {}

    def get_state(self, *args, **kwargs) -> dict[str, Any]:
        state = super().get_state(*args, **kwargs)
        state[UPDATES] = self._updates
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self._updates = state.get(UPDATES, self._updates)
        super().set_state(state)

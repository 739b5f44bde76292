"""A torch learner that runs several epochs over minibatches of whole rows, reproducibly, alone
or as one of several data-parallel learners.

RLlib hands the learner its whole share of the iteration's batch at once; subclasses say what
one minibatch unit is (an episode row for PPO, a chosen/rejected pair of rows for DPO) and this
base runs ``epochs`` over shuffled minibatches of units. The shuffle generator's position is
part of the learner's state, so a resumed run sees the same minibatches as an uninterrupted one.

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

UPDATES = "row_minibatch_updates"


class RowMinibatchLearner(TorchLearner):
    """Epochs over minibatches of units of rows; see the module docstring."""

    epochs_key = "epochs"
    minibatch_key = "minibatch_units"

    def build(self) -> None:
        super().build()
        self._updates = 0

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

    def _update(self, batch: dict[str, Any]):
        settings = self.config.learner_config_dict
        rows = batch[DEFAULT_MODULE_ID]
        minibatch = max(1, settings[self.minibatch_key] // max(1, settings["num_learners"]))
        rng = np.random.default_rng([self.config.seed or 0, self._updates])
        self._updates += 1
        for _ in range(settings[self.epochs_key]):
            order = rng.permutation(self.num_units(rows))
            for start in range(0, len(order), minibatch):
                index = torch.as_tensor(self.unit_rows(order[start : start + minibatch], rows))
                minibatch_rows = {key: value[index] for key, value in rows.items()}
                fwd_out, losses, _ = self._uncompiled_update({DEFAULT_MODULE_ID: minibatch_rows})
        return fwd_out, losses, {}

    def get_state(self, *args, **kwargs) -> dict[str, Any]:
        state = super().get_state(*args, **kwargs)
        state[UPDATES] = self._updates
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self._updates = state.get(UPDATES, self._updates)
        super().set_state(state)

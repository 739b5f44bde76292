"""A torch learner that runs several epochs over minibatches of whole rows, reproducibly.

RLlib hands the learner the whole train batch at once (``minibatch_size=None``); subclasses set
what one minibatch unit is (an episode row for PPO, a chosen/rejected pair of rows for DPO) and
this base runs ``epochs`` over shuffled minibatches of units. The shuffle generator's position is
part of the learner's state, so a resumed run sees the same minibatches as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
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

    def _update(self, batch: dict[str, Any]):
        settings = self.config.learner_config_dict
        rows = batch[DEFAULT_MODULE_ID]
        rng = np.random.default_rng([self.config.seed or 0, self._updates])
        self._updates += 1
        for _ in range(settings[self.epochs_key]):
            order = rng.permutation(self.num_units(rows))
            for start in range(0, len(order), settings[self.minibatch_key]):
                index = torch.as_tensor(
                    self.unit_rows(order[start : start + settings[self.minibatch_key]], rows))
                minibatch = {DEFAULT_MODULE_ID: {key: value[index] for key, value in rows.items()}}
                fwd_out, losses, _ = self._uncompiled_update(minibatch)
        return fwd_out, losses, {}

    def get_state(self, *args, **kwargs) -> dict[str, Any]:
        state = super().get_state(*args, **kwargs)
        state[UPDATES] = self._updates
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self._updates = state.get(UPDATES, self._updates)
        super().set_state(state)

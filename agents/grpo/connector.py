"""GRPO's learner connector: groups of k scored responses -> one row per response with its
group-relative advantage (docs/formulation.md eqs. 28-30).

Rows come group after group (a group's k rows side by side), each with the per-token columns of
:mod:`agents.core.episode_rows`, one advantage per row (``ADVANTAGES``, [N]) and the KL
controller's β of its iteration (``KL_COEF``). A response's score is the reward plugins' score
when the KL term is in the loss, or its return Σ_t r_t (score minus the per-token KL penalty)
when the KL is in the environment's reward (eq. 34). No critic, no GAE.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core import DEFAULT_MODULE_ID

from agents.core.columns import ADVANTAGES, KL_COEF, REWARDS
from agents.core.episode_rows import episode_rows
from agents.core.training_step import episode_groups
from agents.grpo.advantages import group_advantages


def response_score(episode, use_return: bool) -> float:
    """What ranks a response within its group: its score, or its return (eq. 34)."""
    return float(sum(episode.get_rewards())) if use_return else episode.custom_data["score"]


class GroupAdvantageConnector(ConnectorV2):
    """Builds GRPO's rows from grouped, scored episodes."""

    def __init__(
        self,
        input_observation_space=None,
        input_action_space=None,
        *,
        advantage: str = "grpo",
        use_return: bool = False,
        **kwargs,
    ):
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.advantage, self.use_return = advantage, use_return

    def __call__(
        self, *, rl_module, batch, episodes, explore=None, shared_data=None, metrics=None, **kwargs
    ) -> dict[str, Any]:
        groups = episode_groups(episodes)
        ordered = [episode for group in groups for episode in group]
        scores = torch.tensor(
            [[response_score(e, self.use_return) for e in group] for group in groups],
            dtype=torch.float64,
        )
        rows = episode_rows(ordered)
        rows.pop(REWARDS)  # folded into the advantages
        rows[ADVANTAGES] = group_advantages(scores, self.advantage).flatten()
        rows[KL_COEF] = torch.tensor(
            [e.custom_data["kl_coef"] for e in ordered], dtype=torch.float32
        )
        if metrics is not None:
            std = scores.std(dim=1)
            metrics.log_value("grpo/score_std", float(std.mean()), reduce="mean")
            metrics.log_value("grpo/tied_groups", float((std == 0).double().mean()), reduce="mean")
        return {DEFAULT_MODULE_ID: rows}

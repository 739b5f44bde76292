"""PPO's learner connector: episodes -> one padded row per episode, with values, advantages and
returns.

Replaces RLlib's default learner pipeline (which works per timestep and adds a bootstrap step):
each episode becomes one row ``[prompt left-padded to P | response right-padded to T]``
(:mod:`agents.core.episode_rows`), the critic evaluates every row in one no-grad forward
(V_old), and GAE (docs/formulation.md eqs. 7-9) runs on the padded ``[N, T]`` rewards, which
already hold the KL penalty: the environment computed them from the sampling log-probs the agent
supplied. Advantages are whitened over the global batch (eq. 10), across learners.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core import DEFAULT_MODULE_ID

from agents.core.columns import ADVANTAGES, LOSS_MASK, REF_LOGP, REWARDS, VALUE_TARGETS, VF_PREDS
from agents.core.episode_rows import episode_rows
from agents.core.masked import whiten
from agents.ppo.gae import gae


class SequenceBatchConnector(ConnectorV2):
    """Builds PPO's training rows from complete LLM episodes."""

    def __init__(
        self,
        input_observation_space=None,
        input_action_space=None,
        *,
        gamma: float = 1.0,
        lam: float = 0.95,
        whiten_advantages: bool = True,
        value_batch_rows: int = 16,
        **kwargs,
    ):
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.gamma, self.lam = gamma, lam
        self.whiten_advantages = whiten_advantages
        self.value_batch_rows = value_batch_rows

    def __call__(
        self, *, rl_module, batch, episodes, explore=None, shared_data=None, metrics=None, **kwargs
    ) -> dict[str, Any]:
        rows = episode_rows(episodes)
        rows.pop(REF_LOGP)  # the KL is in the rewards
        module = rl_module[DEFAULT_MODULE_ID].unwrapped()
        with torch.no_grad():
            values = torch.cat(
                [
                    module.compute_values(
                        {key: value[i : i + self.value_batch_rows] for key, value in rows.items()}
                    )
                    for i in range(0, len(rows[LOSS_MASK]), self.value_batch_rows)
                ]
            )
        mask = rows[LOSS_MASK]
        values = torch.where(mask, values, 0.0)
        bootstrap = torch.cat([values, values.new_zeros(len(values), 1)], dim=1)
        advantages, returns = gae(rows.pop(REWARDS), bootstrap, mask, self.gamma, self.lam)
        if self.whiten_advantages:
            advantages = whiten(advantages, mask)
        rows.update({VF_PREDS: values, ADVANTAGES: advantages, VALUE_TARGETS: returns})
        return {DEFAULT_MODULE_ID: rows}

"""Learner connector: episodes -> one padded row per episode, with values, advantages, returns.

Replaces RLlib's default learner pipeline (which works per timestep and adds a bootstrap step):
each episode becomes one row ``[prompt left-padded to P | response right-padded to T]``, the
critic evaluates every row in one no-grad forward (V_old), and GAE (SPEC.md section 2) runs on
the padded ``[N, T]`` rewards. The rewards already hold the KL penalty: the environment computed
them from the sampling log-probs the agent supplied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

from agents.ppo.gae import gae, whiten
from agents.rows import PROMPT_WIDTH, episode_prompt, pad_rows, pad_sequences

__all__ = ["PROMPT_WIDTH", "SequenceBatchConnector", "sequence_rows"]


class SequenceBatchConnector(ConnectorV2):
    """Builds PPO's training rows from complete LLM episodes."""

    def __init__(self, input_observation_space=None, input_action_space=None, *,
                 gamma: float = 1.0, lam: float = 0.95, whiten_advantages: bool = True,
                 value_batch_rows: int = 16, **kwargs):
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.gamma, self.lam = gamma, lam
        self.whiten_advantages = whiten_advantages
        self.value_batch_rows = value_batch_rows

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None,
                 metrics=None, **kwargs) -> dict[str, Any]:
        rows = sequence_rows(episodes)
        module = rl_module[DEFAULT_MODULE_ID]
        with torch.no_grad():
            values = torch.cat([
                module.compute_values({key: value[i : i + self.value_batch_rows]
                                       for key, value in rows.items()})
                for i in range(0, len(rows[Columns.ACTIONS]), self.value_batch_rows)
            ])
        mask = rows[Columns.LOSS_MASK]
        values = torch.where(mask, values, 0.0)
        bootstrap = torch.cat([values, values.new_zeros(len(values), 1)], dim=1)
        advantages, returns = gae(rows.pop(Columns.REWARDS), bootstrap, mask, self.gamma, self.lam)
        if self.whiten_advantages:
            advantages = whiten(advantages, mask)
        rows.update({Columns.VF_PREDS: values, Columns.ADVANTAGES: advantages,
                     Columns.VALUE_TARGETS: returns})
        return {DEFAULT_MODULE_ID: rows}


def sequence_rows(episodes: list[SingleAgentEpisode]) -> dict[str, torch.Tensor]:
    """Padded tensors of N complete episodes: token rows, actions, sampling log-probs, rewards."""
    prompts = [episode_prompt(e) for e in episodes]
    responses = [np.asarray(e.get_actions()) for e in episodes]
    rows = pad_rows(prompts, responses)
    length = rows[Columns.ACTIONS].shape[1]
    rows[Columns.ACTION_LOGP] = pad_sequences(
        [e.get_extra_model_outputs(Columns.ACTION_LOGP) for e in episodes], length,
        dtype=torch.float32)
    rows[Columns.REWARDS] = pad_sequences([e.get_rewards() for e in episodes], length,
                                          dtype=torch.float32)
    return rows

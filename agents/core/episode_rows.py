"""RLlib episodes of rlhf_env -> one padded training row per episode (no forward pass here).

The prompt is the valid part of an episode's first observation and the response its actions;
the per-token columns the env runner stored (the sampler's log-probs, the environment's rewards
and reference log-probs) are padded to the same [N, T] layout (:mod:`agents.core.columns`).
"""

from __future__ import annotations

import numpy as np
import torch

from agents.core.columns import (
    ACTION_LOGP,
    ACTIONS,
    ATTENTION_MASK,
    INPUT_IDS,
    REF_LOGP,
    REWARDS,
    rows_batch,
)
from rlhf_env.data.ops import pad_rows, pad_sequences


def episode_prompt(episode) -> np.ndarray:
    """The prompt's token ids: the valid part of an episode's first observation."""
    first = episode.get_observations(0)
    return np.array(first[INPUT_IDS][: int(first[ATTENTION_MASK].sum())])


def episode_rows(episodes) -> dict[str, torch.Tensor]:
    """Token rows of N complete episodes, with their per-token sampling log-probs, rewards and
    reference log-probs ([N, T] float32, 0 on padding)."""
    rows = rows_batch(
        pad_rows(
            [episode_prompt(e) for e in episodes], [np.asarray(e.get_actions()) for e in episodes]
        )
    )
    width = rows[ACTIONS].shape[1]
    for column, values in (
        (ACTION_LOGP, [e.get_extra_model_outputs(ACTION_LOGP) for e in episodes]),
        (REWARDS, [e.get_rewards() for e in episodes]),
        (REF_LOGP, [e.get_extra_model_outputs(REF_LOGP) for e in episodes]),
    ):
        rows[column] = pad_sequences(values, width, dtype=torch.float32)
    return rows

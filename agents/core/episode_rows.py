"""RLlib episodes of rlhf_env -> one padded training row per episode (no forward pass here).

The prompt is the valid part of an episode's first observation and the response its actions;
the per-token columns the env runner stored (the sampler's log-probs, the environment's rewards
and reference log-probs) are padded to the same [N, T] layout (:mod:`agents.core.columns`).

In a multi-turn episode (:mod:`rlhf_env.envs.turns`) the response is the whole stream of the
last observation, the environment's tokens included, so the policy and the critic see them as
context; the loss mask is 0 on them and the per-token columns are placed at the agent's tokens
(0 at the environment's), so they carry no policy-gradient, KL or value term (eq. 44).
"""

from __future__ import annotations

import numpy as np
import torch

from agents.core.columns import (
    ACTION_LOGP,
    ATTENTION_MASK,
    ENV_TOKENS,
    INPUT_IDS,
    LOSS_MASK,
    REF_LOGP,
    REWARDS,
    rows_batch,
)
from rlhf_env.data.ops import pad_rows


def episode_prompt(episode) -> np.ndarray:
    """The prompt's token ids: the valid part of an episode's first observation."""
    first = episode.get_observations(0)
    return np.array(first[INPUT_IDS][: int(first[ATTENTION_MASK].sum())])


def episode_response(episode) -> tuple[np.ndarray, np.ndarray]:
    """The response's token ids and its agent mask (True at the agent's tokens): the actions
    alone, or in a multi-turn episode the actions with the environment's tokens after them."""
    actions = np.asarray(episode.get_actions())
    inserted = np.asarray(episode.get_extra_model_outputs(ENV_TOKENS), dtype=np.int64)
    if not inserted.any():
        return actions, np.ones(len(actions), bool)
    mask = np.concatenate([[True] + [False] * int(n) for n in inserted])
    last = episode.get_observations(-1)
    start = len(episode_prompt(episode))
    stream = np.array(last[INPUT_IDS][start : start + len(mask)])
    if not np.array_equal(stream[mask], actions):
        raise ValueError(
            "the episode's last observation does not hold its actions where its env_tokens "
            "counts place them: it was not recorded by the multi-turn env runner"
        )
    return stream, mask


def episode_rows(episodes) -> dict[str, torch.Tensor]:
    """Token rows of N complete episodes, with their per-token sampling log-probs, rewards and
    reference log-probs ([N, T] float32, 0 on padding and on environment tokens)."""
    responses, agent_masks = zip(*(episode_response(e) for e in episodes))
    rows = rows_batch(
        pad_rows([episode_prompt(e) for e in episodes], responses, agent_masks=agent_masks)
    )
    mask = rows[LOSS_MASK]
    for column, values in (
        (ACTION_LOGP, [e.get_extra_model_outputs(ACTION_LOGP) for e in episodes]),
        (REWARDS, [e.get_rewards() for e in episodes]),
        (REF_LOGP, [e.get_extra_model_outputs(REF_LOGP) for e in episodes]),
    ):
        rows[column] = torch.zeros(mask.shape, dtype=torch.float32)
        rows[column][mask] = torch.cat(
            [torch.as_tensor(np.array(v), dtype=torch.float32) for v in values]
        )
    return rows

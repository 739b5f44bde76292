"""The column names of our RLlib training batches, in one place.

RLlib's own columns keep RLlib's names (``Columns``); ours are the padded-row layout of
:mod:`rlhf_env.data.ops` and what the environment reports per token. A training batch holds one
row per sequence: ``[prompt left-padded to P | response right-padded to T]``.
"""

from __future__ import annotations

import torch
from ray.rllib.core.columns import Columns

from rlhf_env.data.ops import PaddedRows

# RLlib's columns that our learners read or write.
ACTIONS = Columns.ACTIONS  # [N, T] response token ids
ACTION_LOGP = Columns.ACTION_LOGP  # [N, T] log π_old(a_t|s_t): the sampler's log-probs
ACTION_DIST_INPUTS = Columns.ACTION_DIST_INPUTS  # [N, T, V] the module's logits (forward only)
LOSS_MASK = Columns.LOSS_MASK  # [N, T] true on real response tokens
REWARDS = Columns.REWARDS  # [N, T] per-token rewards of the environment
ADVANTAGES = Columns.ADVANTAGES  # [N, T]
VALUE_TARGETS = Columns.VALUE_TARGETS  # [N, T] returns
VF_PREDS = Columns.VF_PREDS  # [N, T] V_old(s_t)

# Ours.
INPUT_IDS = "input_ids"  # [N, P+T] prompt then response tokens
ATTENTION_MASK = "attention_mask"  # [N, P+T]
PROMPT_WIDTH = "prompt_width"  # [N] P, the same in every row of a batch
REF_LOGP = "ref_logp"  # [N, T] log π_ref(a_t|s_t), from the environment's info
ENV_TOKENS = "env_tokens"  # per step of an episode: tokens a multi-turn environment appended
KL_COEF = "kl_coef"  # [N] β of the KL controller when the row was sampled
PAIR_WEIGHT = "pair_weight"  # [N] weight of the preference pair a row belongs to (DPO)
VALUES = "values"  # [N, T] V_θ(s_t), the module's training forward (PPO)
LEARNER_LOGP = "learner_logp"  # [N, T] log π_learner_old(a_t|s_t), for a rollout correction
IS_WEIGHT = "is_weight"  # [N, T] importance weight learner/sampler (docs/formulation.md eq. 36)


def rows_batch(rows: PaddedRows) -> dict[str, torch.Tensor]:
    """The token columns of a training batch from padded rows."""
    return {
        INPUT_IDS: rows.input_ids,
        ATTENTION_MASK: rows.attention_mask,
        PROMPT_WIDTH: torch.full((len(rows.input_ids),), rows.prompt_width, dtype=torch.long),
        ACTIONS: rows.actions,
        LOSS_MASK: rows.loss_mask,
    }


def padded_rows(batch: dict[str, torch.Tensor]) -> PaddedRows:
    """The padded rows of a training batch's token columns (the inverse of :func:`rows_batch`)."""
    return PaddedRows(
        batch[INPUT_IDS],
        batch[ATTENTION_MASK],
        batch[ACTIONS],
        batch[LOSS_MASK],
        int(batch[PROMPT_WIDTH][0]),
    )

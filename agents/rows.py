"""Padded training rows ``[prompt left-padded to P | response right-padded to T]`` (no Ray).

One row per sequence: the prompts are left-padded to the batch's widest prompt P and the
responses right-padded to the longest response T, so every response starts at column P and a
causal LM's logits ``[:, P-1 : -1]`` predict response tokens 0..T-1 in every row. Position ids
must skip the left padding (``cumsum(attention_mask) - 1``, clamped at 0). Shared by PPO's
learner connector and DPO's preference rows; the keys equal RLlib's ``Columns`` names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
PROMPT_WIDTH = "prompt_width"
ACTIONS = "actions"  # == ray.rllib.core.columns.Columns.ACTIONS
LOSS_MASK = "loss_mask"  # == Columns.LOSS_MASK


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding: 0 at each row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def pad_sequences(
    seqs: Sequence[Sequence],
    width: int | None = None,
    pad=0,
    dtype: torch.dtype | None = None,
    side: str = "right",
) -> torch.Tensor:
    """Stack 1-D sequences (lists, arrays, tensors) into [N, width], padded with ``pad``.

    ``side`` is where the padding goes (``"right"`` or ``"left"``); ``width`` defaults to the
    longest sequence and ``dtype`` to the first sequence's.
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    if not seqs:
        raise ValueError("no sequences to pad")
    rows = [torch.as_tensor(seq, dtype=dtype) for seq in seqs]
    longest = max(len(row) for row in rows)
    width = longest if width is None else width
    if longest > width:
        raise ValueError(f"a sequence of {longest} items does not fit the width {width}")
    out = torch.full((len(rows), width), pad, dtype=dtype or rows[0].dtype)
    for i, row in enumerate(rows):
        if side == "right":
            out[i, : len(row)] = row
        else:
            out[i, width - len(row) :] = row
    return out


def pad_rows(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    pad_id: int = 0,
    widths: tuple[int, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Token rows of N (prompt, response) pairs in the layout of the module docstring.

    ``widths`` fixes (P, T) instead of taking the longest prompt and response, so that batches
    of different rows have one shape (offline data blocks are concatenated by Ray Data).

    Returns:
        ``input_ids`` [N, P+T] and ``attention_mask`` [N, P+T] (long), ``prompt_width`` [N]
        (all P), ``actions`` [N, T] (the response tokens, ``pad_id`` after the end) and
        ``loss_mask`` [N, T] (bool, true on real response tokens).
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if not prompts:
        raise ValueError("no rows to pad")
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        if len(prompt) == 0 or len(response) == 0:
            raise ValueError(f"row {i} has an empty {'prompt' if len(prompt) == 0 else 'response'}")
    prompt_width, response_width = widths or (None, None)
    actions = pad_sequences(responses, response_width, pad=pad_id, dtype=torch.long)
    prompt_ids = pad_sequences(prompts, prompt_width, pad=pad_id, dtype=torch.long, side="left")
    # Padding masks from the lengths: a response fills columns [0, len), a prompt [P - len, P).
    lengths = torch.tensor([len(r) for r in responses])
    loss_mask = torch.arange(actions.shape[1]) < lengths[:, None]
    prompt_lengths = torch.tensor([len(p) for p in prompts])
    width = prompt_ids.shape[1]
    prompt_mask = torch.arange(width - 1, -1, -1) < prompt_lengths[:, None]
    return {
        INPUT_IDS: torch.cat([prompt_ids, actions], dim=1),
        ATTENTION_MASK: torch.cat([prompt_mask, loss_mask], dim=1).long(),
        PROMPT_WIDTH: torch.full((len(prompts),), width, dtype=torch.long),
        ACTIONS: actions,
        LOSS_MASK: loss_mask,
    }


def episode_prompt(episode) -> np.ndarray:
    """The prompt's token ids: the valid part of an episode's first observation."""
    first = episode.get_observations(0)
    return np.array(first[INPUT_IDS][: int(first[ATTENTION_MASK].sum())])

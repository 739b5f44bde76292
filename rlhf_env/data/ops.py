"""Small tensor operations on causal LMs that the environment, the samplers and the learners share.

A batch of (prompt, response) sequences is laid out as padded rows
``[prompt left-padded to P | response right-padded to T]`` (:func:`pad_rows`): every response
starts at column P, so a causal LM's outputs at columns ``P-1 .. P+T-2`` predict response tokens
``0 .. T-1`` in every row (:func:`response_states`), and position ids skip the left padding
(:func:`position_ids`). Log-probs are taken in float32 whatever the model's dtype
(:func:`token_logprobs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Set every dropout probability of ``model`` (its modules and its config) to 0.

    RL needs the same log-prob for the same token in the sampler and in the learner, whose
    forward runs in train mode; with GPT-2's default dropout of 0.1 they differ by up to 0.25.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    config = getattr(model, "config", None)
    for key, value in list(vars(config).items()) if config is not None else []:
        if isinstance(value, float) and ("dropout" in key or key.endswith("_pdrop")):
            setattr(config, key, 0.0)
    return model


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding: 0 at each row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


@dataclass
class PaddedRows:
    """N (prompt, response) sequences in the layout of the module docstring.

    ``input_ids`` and ``attention_mask`` are [N, P+T] (long); ``actions`` [N, T] holds the
    response tokens (the pad id after a response's end) and ``loss_mask`` [N, T] is true on real
    response tokens the policy generated (in a multi-turn episode, not on the environment's
    tokens, which the attention mask still covers); ``prompt_width`` is P.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    actions: torch.Tensor
    loss_mask: torch.Tensor
    prompt_width: int


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
    # np.array copies read-only arrays (RLlib's episodes hand those out), which torch won't wrap.
    rows = [
        torch.as_tensor(np.array(seq) if isinstance(seq, np.ndarray) else seq, dtype=dtype)
        for seq in seqs
    ]
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
    agent_masks: Sequence[Sequence[bool]] | None = None,
) -> PaddedRows:
    """Padded rows of N (prompt, response) token-id pairs (see the module docstring).

    ``widths`` fixes (P, T) instead of taking the longest prompt and response, so that batches
    of different rows have one shape. ``agent_masks`` (one per response, its length) marks the
    tokens the policy generated; the others (a multi-turn environment's) get loss mask 0.
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
    # Masks from the lengths: a response fills columns [0, len), a prompt [P - len, P).
    response_mask = (
        torch.arange(actions.shape[1]) < torch.tensor([len(r) for r in responses])[:, None]
    )
    loss_mask = response_mask
    if agent_masks is not None:
        for i, (response, agent) in enumerate(zip(responses, agent_masks)):
            if len(agent) != len(response):
                raise ValueError(
                    f"row {i}: {len(agent)} agent-mask entries, {len(response)} tokens"
                )
        loss_mask = response_mask & pad_sequences(agent_masks, actions.shape[1], dtype=torch.bool)
    width = prompt_ids.shape[1]
    prompt_mask = torch.arange(width - 1, -1, -1) < torch.tensor([len(p) for p in prompts])[:, None]
    return PaddedRows(
        input_ids=torch.cat([prompt_ids, actions], dim=1),
        attention_mask=torch.cat([prompt_mask, response_mask], dim=1).long(),
        actions=actions,
        loss_mask=loss_mask,
        prompt_width=width,
    )


def response_states(
    backbone: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_width: int,
) -> torch.Tensor:
    """Hidden states [N, T, H] of a model trunk at the positions that predict the response
    tokens of padded rows: columns P-1 .. P+T-2, one forward for all rows."""
    hidden = backbone(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
    ).last_hidden_state
    return hidden[:, prompt_width - 1 : -1]


def token_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """log π(y_t | ·) of every token, [N, T] float32, from the logits [N, T, V] that predict them.

    The log-softmax runs in float32, so bf16 logits lose nothing; it is computed as
    ``logit[y_t] − logsumexp(logits)``, which keeps no second [N, T, V] tensor for the backward.
    With ``mask``, padded slots give 0 (their token ids may be anything, even out of range).
    """
    if logits.shape[:-1] != tokens.shape or (mask is not None and mask.shape != tokens.shape):
        raise ValueError(
            f"expected logits [N, T, V], tokens [N, T] and mask [N, T]; got "
            f"{tuple(logits.shape)}, {tuple(tokens.shape)}, "
            f"{None if mask is None else tuple(mask.shape)}"
        )
    logits = logits.float()
    if mask is not None:
        tokens = torch.where(mask.bool(), tokens.long(), 0)
    picked = logits.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return picked if mask is None else torch.where(mask.bool(), picked, 0)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy −Σ_v π log π of the distribution at each position, [N, T] float32
    (docs/formulation.md eq. 14)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def summed_logprobs(
    token_logps: torch.Tensor, mask: torch.Tensor, average: bool = False
) -> torch.Tensor:
    """[N] sums (or, with ``average``, means) of [N, T] per-token log-probs over the mask: the
    sequence log-prob log π(y|x) = Σ_t log π(y_t|x, y_<t) (docs/formulation.md eq. 22)."""
    mask = mask.bool()
    counts = mask.sum(-1)
    if (counts == 0).any():
        rows = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"rows {rows} have no real response tokens (mask is all zero)")
    total = torch.where(mask, token_logps, 0).sum(-1)
    return total / counts if average else total


def response_logprobs(model: torch.nn.Module, rows: PaddedRows) -> torch.Tensor:
    """Per-token log π(y_t | x, y_<t) [N, T] of padded rows under a causal LM (0 on padding)."""
    states = response_states(
        model.base_model, rows.input_ids, rows.attention_mask, rows.prompt_width
    )
    logits = model.get_output_embeddings()(states)
    return token_logprobs(logits, rows.actions, rows.loss_mask)

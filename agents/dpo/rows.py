"""Preference pairs -> 2N padded token rows, chosen then rejected, for one causal-LM forward.

The rows have PPO's layout (:mod:`agents.rows`): ``[prompt left-padded to P | response
right-padded to T]``. Row i is pair i's chosen response and row N+i its rejected one, so after
``logps = sequence_logprobs(logits[:, P-1 : -1], rows["actions"], rows["loss_mask"])`` the
log-probs for :func:`agents.dpo.loss.dpo_loss` are ``logps.chunk(2)``: (chosen, rejected).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agents.rows import pad_rows

REF_LOGPS = "ref_logps"  # [2N] sequence log π_ref of each row (chosen rows first)
# Online DPO only (its KL term, agents.dpo.loss.kl_penalty):
REF_TOKEN_LOGPS = "ref_token_logps"  # [2N, T] per-token log π_ref, aligned with "actions"
KL_COEF = "kl_coef"  # [2N] the KL controller's β of the iteration that sampled the row


def preference_rows(
    prompts: Sequence[Sequence[int]],
    chosen: Sequence[Sequence[int]],
    rejected: Sequence[Sequence[int]],
    pad_id: int = 0,
) -> dict[str, torch.Tensor]:
    """Padded rows of N (prompt, chosen, rejected) triples, stacked as 2N rows.

    Args:
        prompts: N prompts as token ids (without padding).
        chosen: N preferred responses y_w, token ids.
        rejected: N dispreferred responses y_l, token ids.
        pad_id: the id written into padded slots (they are masked out either way).

    Returns:
        ``input_ids`` [2N, P+T], ``attention_mask`` [2N, P+T], ``prompt_width`` [2N] (all P),
        ``actions`` [2N, T] (response tokens) and ``loss_mask`` [2N, T]; rows 0..N-1 chosen,
        N..2N-1 rejected, P and T the longest prompt and response over all 2N rows.
    """
    if not len(prompts) == len(chosen) == len(rejected):
        raise ValueError(f"got {len(prompts)} prompts, {len(chosen)} chosen and "
                         f"{len(rejected)} rejected responses; need one of each per pair")
    if not prompts:
        raise ValueError("no preference pairs")
    for i, triple in enumerate(zip(prompts, chosen, rejected)):
        for name, tokens in zip(("prompt", "chosen response", "rejected response"), triple):
            if len(tokens) == 0:
                raise ValueError(f"preference pair {i} has an empty {name}")
    return pad_rows([*prompts, *prompts], [*chosen, *rejected], pad_id=pad_id)

"""Preference pairs -> 2N padded token rows, chosen then rejected, for one causal-LM forward.

The rows have the padded-row layout of :mod:`rlhf_env.data.ops`. Row i is pair i's chosen
response and row N+i its rejected one, so the [2N] sequence log-probs of a forward split into
(chosen, rejected) with ``.chunk(2)``. Online pairs come from sampled episodes
(:mod:`agents.dpo.connector`), offline pairs from a pair table (:mod:`agents.dpo.offline_data`);
both carry the per-token reference log-probs ``REF_LOGP``, the β of the KL term ``KL_COEF`` and
each pair's weight ``PAIR_WEIGHT``, so one learner serves both.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agents.core.columns import ACTIONS, KL_COEF, PAIR_WEIGHT, REF_LOGP, rows_batch
from rlhf_env.data.ops import pad_rows, pad_sequences


def preference_rows(
    prompts: Sequence[Sequence[int]],
    chosen: Sequence[Sequence[int]],
    rejected: Sequence[Sequence[int]],
    *,
    ref_chosen: Sequence[Sequence[float]],
    ref_rejected: Sequence[Sequence[float]],
    weights: Sequence[float] | None = None,
    kl_coef: Sequence[float] | None = None,
    pad_id: int = 0,
) -> dict[str, torch.Tensor]:
    """Training rows of N (prompt, chosen, rejected) triples, stacked as 2N rows.

    ``ref_chosen`` / ``ref_rejected`` are each response's per-token log π_ref; ``weights`` the
    pairs' weights (default 1) and ``kl_coef`` each pair's β of the KL term (default 0).
    """
    if not len(prompts) == len(chosen) == len(rejected):
        raise ValueError(
            f"got {len(prompts)} prompts, {len(chosen)} chosen and "
            f"{len(rejected)} rejected responses; need one of each per pair"
        )
    if not prompts:
        raise ValueError("no preference pairs")
    for i, triple in enumerate(zip(prompts, chosen, rejected)):
        for name, tokens in zip(("prompt", "chosen response", "rejected response"), triple):
            if len(tokens) == 0:
                raise ValueError(f"preference pair {i} has an empty {name}")
    n = len(prompts)
    rows = rows_batch(pad_rows([*prompts, *prompts], [*chosen, *rejected], pad_id=pad_id))
    rows[REF_LOGP] = pad_sequences(
        [*ref_chosen, *ref_rejected], rows[ACTIONS].shape[1], dtype=torch.float32
    )
    weights = torch.ones(n) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    kl_coef = torch.zeros(n) if kl_coef is None else torch.as_tensor(kl_coef, dtype=torch.float32)
    rows[PAIR_WEIGHT] = torch.cat([weights, weights])
    rows[KL_COEF] = torch.cat([kl_coef, kl_coef])
    return rows

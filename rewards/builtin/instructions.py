"""Verifiable instruction checks: ``instruction_length``, ``instruction_content``,
``instruction_format``.

Each prompt of the ``"instructions"`` source (:mod:`rlhf_env.data.instructions`) carries three
checks, one per slot, in the columns ``length_check``, ``content_check`` and ``format_check``
(``{"kind": ..., "value": ...}``). Each reward here scores one slot: 1.0 when the completion
passes its check, 0.0 when it fails, ``None`` for a sample without that check. Weighted 1/3
each, their sum is the fraction of checks passed (docs/formulation.md eq. 47), and each is
logged as its own component. The checks, in the manner of IFEval (Zhou et al. 2023):

- ``max_words``/``min_words``: the number of words (:func:`rewards.builtin.rules.words`);
- ``max_sentences``: the number of sentences, pieces ending in ``.``, ``!`` or ``?`` followed
  by a space or the end (the last piece needs no mark);
- ``include_words``/``avoid_words``: every listed word present / none present, as whole words,
  ignoring case;
- ``json_keys``: the whole response (inside a ```` ``` ```` fence or not) is a JSON object with
  every listed key;
- ``end_phrase``: the response ends with the phrase, ignoring case and surrounding spaces;
- ``lowercase``: no upper-case letter; ``no_commas``: no comma.

A response without a single word fails every check, so saying nothing never satisfies a limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from rewards.builtin.rules import word_pattern, words
from rewards.protocol import as_texts
from rewards.registry import register_reward

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """The sentences of ``text``: pieces ending in ``.``, ``!`` or ``?`` that hold a word."""
    return [piece for piece in _SENTENCE_END.split(text.strip()) if words(piece)]


def json_object(text: str) -> dict | None:
    """The JSON object the whole text is (a ```` ``` ```` fence around it allowed), else None."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    try:
        parsed = json.loads(fenced.group(1) if fenced else stripped)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


CHECKS: dict[str, Callable[[str, Any], bool]] = {
    "max_words": lambda text, n: len(words(text)) <= n,
    "min_words": lambda text, n: len(words(text)) >= n,
    "max_sentences": lambda text, n: len(sentences(text)) <= n,
    "include_words": lambda text, ws: all(word_pattern(w).search(text) for w in ws),
    "avoid_words": lambda text, ws: not any(word_pattern(w).search(text) for w in ws),
    "json_keys": lambda text, keys: (
        (obj := json_object(text)) is not None and all(key in obj for key in keys)
    ),
    "end_phrase": lambda text, phrase: text.strip().casefold().endswith(phrase.strip().casefold()),
    "lowercase": lambda text, _: text == text.lower(),
    "no_commas": lambda text, _: "," not in text,
}


def passes(check: dict, text: str) -> bool:
    """Whether ``text`` passes ``check`` (``{"kind": ..., "value": ...}``; module docstring)."""
    kind = check.get("kind") if isinstance(check, dict) else None
    if kind not in CHECKS:
        raise ValueError(
            f"unknown instruction check {check!r}: a check is {{'kind': ..., 'value': ...}} with "
            f"kind one of {sorted(CHECKS)}"
        )
    return bool(words(text)) and CHECKS[kind](text, check.get("value"))


def _slot_reward(name: str, column: str) -> Callable[..., list[float | None]]:
    """The reward named ``name`` scoring each completion against its ``column`` check."""

    def reward(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        checks = kwargs.get(column)
        if checks is None:
            raise ValueError(
                f"{name} checks each completion against its {column!r} column; the prompts "
                "have none (use the 'instructions' prompt source, or give that column)"
            )
        return [
            None if check is None else float(passes(check, text))
            for check, text in zip(checks, as_texts(completions), strict=True)
        ]

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = f"1.0 when the completion passes its {column!r} check, else 0.0."
    return register_reward(name)(reward)


instruction_length = _slot_reward("instruction_length", "length_check")
instruction_content = _slot_reward("instruction_content", "content_check")
instruction_format = _slot_reward("instruction_format", "format_check")

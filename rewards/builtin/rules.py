"""Rule rewards on the completion's text: ``length``, ``keyword``, ``regex``,
``repetition_penalty``.

Each is a class whose params are its constructor arguments (``get_reward("length", target=20)``)
and whose instances are batched reward functions. Words are runs of letters and digits, with
inner apostrophes ("don't" is one word); punctuation and emoji are not words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rewards.protocol import as_texts
from rewards.registry import register_reward

_WORD = re.compile(r"\w+(?:'\w+)*")


def words(text: str) -> list[str]:
    """The words of ``text``, in order (see the module docstring)."""
    return _WORD.findall(text)


@register_reward("length")
@dataclass
class Length:
    """Closeness to a target length: ``-min(1, |n - target| / target)``, in [-1, 0].

    ``n`` is the completion's length in ``unit`` ("words" or "chars"). The reward is 0 at the
    target and falls linearly to -1 at a distance of ``target`` or more (an empty completion
    scores -1).
    """

    __name__ = "length"  # instances' name, which TRL logs rewards by

    target: int
    unit: str = "words"

    def __post_init__(self) -> None:
        if isinstance(self.target, bool) or not isinstance(self.target, int) or self.target < 1:
            raise ValueError(f"target must be a positive integer, got {self.target!r}")
        if self.unit not in ("words", "chars"):
            raise ValueError(f"unit must be 'words' or 'chars', got {self.unit!r}")

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        # 0.0 - x rather than -x: a completion on target scores 0.0, not -0.0
        return [
            0.0 - min(1.0, abs(self._size(c) - self.target) / self.target)
            for c in as_texts(completions)
        ]

    def _size(self, text: str) -> int:
        return len(words(text)) if self.unit == "words" else len(text)


@register_reward("keyword")
@dataclass
class Keyword:
    """Keywords present: ``present(keywords)/len(keywords) - present(penalize)/len(penalize)``.

    Each list counts the distinct entries found in the completion (a missing list counts 0), so
    the reward is in [-1, 1]. Matching ignores case and respects word boundaries: "cat" matches
    "Cat!" but not "category"; an entry may be a phrase ("well done").
    """

    __name__ = "keyword"  # instances' name, which TRL logs rewards by

    keywords: Sequence[str] = ()
    penalize: Sequence[str] = ()
    _patterns: tuple[list[re.Pattern[str]], list[re.Pattern[str]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        wanted = _word_patterns("keywords", self.keywords)
        unwanted = _word_patterns("penalize", self.penalize)
        self._patterns = (wanted, unwanted)
        if not any(self._patterns):
            raise ValueError("give at least one word in keywords or penalize")

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        wanted, unwanted = self._patterns
        return [
            _fraction_found(wanted, c) - _fraction_found(unwanted, c) for c in as_texts(completions)
        ]


def word_pattern(entry: str) -> re.Pattern[str]:
    """A case-insensitive whole-word pattern for ``entry``; lookarounds so entries like "c++"
    work too."""
    return re.compile(rf"(?<!\w){re.escape(entry.strip())}(?!\w)", re.IGNORECASE)


def _word_patterns(param: str, entries: Sequence[str]) -> list[re.Pattern[str]]:
    """:func:`word_pattern` of each entry; entries must be non-empty strings."""
    if isinstance(entries, str) or not all(isinstance(e, str) and e.strip() for e in entries):
        raise ValueError(f"{param} must be a list of non-empty strings, got {entries!r}")
    return [word_pattern(e) for e in entries]


def _fraction_found(patterns: list[re.Pattern[str]], text: str) -> float:
    return sum(1 for p in patterns if p.search(text)) / len(patterns) if patterns else 0.0


@register_reward("regex")
@dataclass
class Regex:
    """1.0 if the completion matches ``pattern``, else 0.0.

    ``fullmatch=False`` searches anywhere (``re.search``); ``fullmatch=True`` requires the whole
    completion to match, which makes it a format rule. Flags go inline, e.g. ``(?i)``.
    """

    __name__ = "regex"  # instances' name, which TRL logs rewards by

    pattern: str
    fullmatch: bool = False
    _compiled: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            self._compiled = re.compile(self.pattern)
        except (re.error, TypeError) as exc:
            raise ValueError(f"invalid regular expression {self.pattern!r}: {exc}") from exc

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        match = self._compiled.fullmatch if self.fullmatch else self._compiled.search
        return [1.0 if match(c) else 0.0 for c in as_texts(completions)]


@register_reward("repetition_penalty")
@dataclass
class RepetitionPenalty:
    """Minus the fraction of the completion's word n-grams that repeat an earlier one.

    ``(distinct - total) / total`` over the case-folded word n-grams: 0 without repetition,
    towards -1 as the text degenerates (with n = 2, "amazing amazing amazing" scores -1/2 and k
    copies of one word score -(k-2)/(k-1)); 0 when there are fewer than ``n`` words. It guards
    against the reward hacking that a sentiment reward invites. The default n = 2 catches
    repeated words, which n = 3 misses, and rarely fires on short natural text, which n = 1 does.
    """

    __name__ = "repetition_penalty"  # instances' name, which TRL logs rewards by

    n: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be a positive integer, got {self.n!r}")

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        return [self._penalty(c) for c in as_texts(completions)]

    def _penalty(self, text: str) -> float:
        folded = [w.casefold() for w in words(text)]
        grams = [tuple(folded[i : i + self.n]) for i in range(len(folded) - self.n + 1)]
        return (len(set(grams)) - len(grams)) / len(grams) if grams else 0.0


@register_reward("overlong_penalty")
@dataclass
class OverlongPenalty:
    """DAPO's soft overlong punishment (docs/formulation.md eq. 43; Yu et al. 2025): 0 up to
    ``max_tokens − cache_tokens`` response tokens, then falling linearly to −1 at ``max_tokens``,
    −1 beyond. Set ``max_tokens`` to the task's ``max_new_tokens`` (a truncated response then
    scores −1). Counts the response's tokens (the ``completion_ids`` keyword argument)."""

    __name__ = "overlong_penalty"  # instances' name, which TRL logs rewards by

    max_tokens: int
    cache_tokens: int

    def __post_init__(self) -> None:
        if not 0 < self.cache_tokens <= self.max_tokens:
            raise ValueError(
                f"need 0 < cache_tokens <= max_tokens, got {self.cache_tokens} and "
                f"{self.max_tokens}"
            )

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        if "completion_ids" not in kwargs:
            raise ValueError(
                "overlong_penalty counts response tokens: it needs the "
                "completion_ids keyword argument"
            )
        start = self.max_tokens - self.cache_tokens
        return [
            0.0
            if len(ids) <= start
            else -1.0
            if len(ids) > self.max_tokens
            else (start - len(ids)) / self.cache_tokens
            for ids in kwargs["completion_ids"]
        ]

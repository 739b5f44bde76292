"""``vader``: lexicon sentiment of each completion (Hutto & Gilbert 2014).

The VADER compound score (Hutto & Gilbert, ICWSM 2014), in [-1, 1]: the summed valence x of the
sentiment words, after VADER's rules for negation, boosters, capitals and "but", squashed as
``x / sqrt(x² + 15)``. The completion is scored alone, without its prompt. One analyzer, built on
first use, serves every call.
"""

from __future__ import annotations

import functools
from typing import Any

from rewards.protocol import as_texts
from rewards.registry import register_reward


@register_reward("vader")
def vader(prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
    """VADER compound sentiment of each completion, in [-1, 1]."""
    analyzer = _analyzer()
    return [analyzer.polarity_scores(text)["compound"] for text in as_texts(completions)]


@functools.cache
def _analyzer() -> Any:
    """The shared VADER analyzer (it reads its lexicon files when built)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()

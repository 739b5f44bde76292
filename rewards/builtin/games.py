"""Rewards of the multi-turn games: ``guess_number``.

A game's environment records its outcome in the episode's state, which reaches the rewards as
keyword columns (``solved``, and ``turns``, the agent's turns taken), as a prompt's extra columns
do (:mod:`rlhf_env.envs.turns`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rewards.registry import register_reward


@register_reward("guess_number")
@dataclass
class GuessNumber:
    """docs/formulation.md eq. 46: ``1 − turn_cost·(turns − 1)`` for a solved game, else 0.

    1 for a first-turn solve, ``turn_cost`` less for each further turn taken; an unsolved game
    scores 0 whatever its length, so stalling (never ending a turn) earns nothing.
    """

    __name__ = "guess_number"  # instances' name, which TRL logs rewards by

    turn_cost: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.turn_cost < 1:
            raise ValueError(f"turn_cost must be in [0, 1), got {self.turn_cost!r}")

    def __call__(
        self,
        prompts: list[str],
        completions: list[str],
        solved: Sequence[bool] | None = None,
        turns: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        if solved is None or turns is None:
            raise ValueError(
                "guess_number scores the game's outcome, the columns 'solved' and 'turns' that "
                "a guess_number environment records: use it with rlhf_env/GuessNumber-v0"
            )
        return [
            (1.0 - self.turn_cost * (n - 1)) if won else 0.0
            for won, n in zip(solved, turns, strict=True)
        ]

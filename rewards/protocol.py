"""The reward protocol, the same as TRL's reward functions so users can bring theirs unchanged.

A reward is any callable

    fn(prompts: list[str], completions: list[str], **kwargs) -> list[float | None]

called on a batch, with ``prompts`` and ``completions`` passed **by keyword** (as TRL does), and
returning one value per completion. ``None`` means "no opinion on this sample" (TRL semantics)
and adds 0 to a weighted sum. ``kwargs`` carries per-sample columns of the prompt dataset (e.g. a
``reference`` list) and anything else the caller passes; a reward takes what it needs and must
accept and ignore the rest. Reward models implement the same protocol.

A reward should have a ``__name__``: TRL logs rewards by it, and so do we when no other name is
given.
"""

from __future__ import annotations

from typing import Any, Protocol


class RewardFn(Protocol):
    """A batched reward: one finite float (or ``None``) per completion; see the module docstring."""

    def __call__(
        self, prompts: list[str], completions: list[str], **kwargs: Any
    ) -> list[float | None]: ...

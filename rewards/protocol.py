"""The reward protocol, the same as TRL's reward functions so users can bring theirs unchanged.

A reward is any callable (or ``async def`` function)

    fn(prompts: list[str], completions: list[str], **kwargs) -> list[float | None]

called on a batch, with ``prompts`` and ``completions`` passed **by keyword** (as TRL does), and
returning one value per completion. ``None`` means "no opinion on this sample" (TRL semantics)
and adds 0 to a weighted sum. The environment passes what TRL's GRPOTrainer passes:

- ``prompts`` and ``completions``: texts, or for conversational prompts (TRL's conversational
  format) the prompt's messages and a one-message completion
  ``[{"role": "assistant", "content": text}]``;
- ``completion_ids``: each response's token ids, also as ``completions_ids`` (the name TRL's
  reward-function documentation uses, while its trainer passes ``completion_ids``: both forms
  work here);
- every extra column of the prompt source, as a list with one value per sample;
- ``trainer_state``: a :class:`TrainerState` (``global_step``, the training iteration);
- ``log_extra(column, values)`` and ``log_metric(name, value)``: record per-sample values and a
  scalar, shown in the episode's ``info["reward_log"]``.

A reward takes what it needs and must accept and ignore the rest. Reward models implement the
same protocol. The built-ins take texts and conversations alike (:func:`as_texts`).

A reward should have a ``__name__``: TRL logs rewards by it, and so do we when no other name is
given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# The keyword arguments the environment passes every reward itself (prompt columns may not
# take these names).
REWARD_ARGUMENTS = (
    "prompts",
    "completions",
    "completion_ids",
    "completions_ids",
    "trainer_state",
    "log_extra",
    "log_metric",
)


@dataclass
class TrainerState:
    """What a reward sees of the training progress (TRL passes its ``TrainerState``):
    ``global_step`` is the training iteration the agent last set on the environment (0 before
    training, and for an environment used without an agent)."""

    global_step: int = 0


class RewardFn(Protocol):
    """A batched reward: one finite float (or ``None``) per completion; see the module docstring."""

    def __call__(
        self, prompts: list[str], completions: list[str], **kwargs: Any
    ) -> list[float | None]: ...


def as_texts(items: list) -> list[str]:
    """Prompts or completions as texts: a text as is, a conversation (TRL's conversational
    format) as its messages' contents joined by newlines (a completion's one message: its
    content)."""
    return [
        item if isinstance(item, str) else "\n".join(str(m["content"]) for m in item)
        for item in items
    ]

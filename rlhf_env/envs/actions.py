"""Actions that carry the log-prob they were sampled with, and action validation.

The KL term of the reward needs ``log π_old(a_t|s_t)``, the log-prob with which the agent sampled
the token. An agent supplies it by stepping with a :class:`TokenAction`: an ``int`` subclass, so it
passes ``Discrete.contains``, ``check_env`` and Gymnasium's wrappers unchanged, that also carries
``.logprob``. A plain ``int`` (or numpy integer) is accepted too: the environment then has no
sampling log-prob, treats the policy as equal to the reference for that token (KL term 0) and
reports ``info["logprob_supplied"] = False``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

# Log-probs a little above 0 come from float rounding; anything larger is a caller's bug.
_LOGPROB_SLACK = 1e-4


class TokenAction(int):
    """A token id with the log-prob the agent sampled it with: ``TokenAction(1234, -2.3)``."""

    logprob: float | None

    def __new__(cls, token: int, logprob: float | None = None) -> TokenAction:
        action = super().__new__(cls, token)
        action.logprob = None if logprob is None else float(logprob)
        return action

    def __repr__(self) -> str:
        return f"TokenAction({int(self)}, logprob={self.logprob})"

    @classmethod
    def batch(cls, tokens: Sequence[int], logprobs: Sequence[float]) -> list[TokenAction]:
        """Pair a batch of token ids with their log-probs (a list, for vector envs)."""
        if len(tokens) != len(logprobs):
            raise ValueError(f"{len(tokens)} tokens but {len(logprobs)} log-probs")
        return [cls(int(t), float(lp)) for t, lp in zip(tokens, logprobs)]


def validate_action(action: object, vocab_size: int) -> tuple[int, float | None]:
    """Return ``(token_id, sampling_logprob or None)``; raise a clear error for bad input."""
    if isinstance(action, np.ndarray) and action.shape == ():
        action = action.item()
    if isinstance(action, (bool, np.bool_)) or not isinstance(action, numbers.Integral):
        raise TypeError(
            f"action must be an integer token id in [0, {vocab_size}), got {action!r} "
            f"of type {type(action).__name__}"
        )
    token = int(action)
    if not 0 <= token < vocab_size:
        raise ValueError(f"action {token} is out of range: token ids are in [0, {vocab_size})")
    logprob = getattr(action, "logprob", None)
    if logprob is not None and not (math.isfinite(logprob) and logprob <= _LOGPROB_SLACK):
        raise ValueError(
            f"the log-prob supplied with token {token} is {logprob}: it must be finite and <= 0"
        )
    return token, logprob

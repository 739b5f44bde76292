"""Conformance check for reward plugins: ``check_reward(spec, **params)``.

A plugin author runs it on their own reward before publishing it. On a small fixed batch
(:data:`PROMPTS`, :data:`COMPLETIONS`: an empty completion, non-ASCII text, emoji) it checks
the protocol of :mod:`rewards.protocol`:

1. the reward has a usable name (it is logged as ``reward/<name>``, and TRL logs ``__name__``);
2. it takes ``prompts=`` and ``completions=`` (with the other keyword arguments TRL and the
   environment pass: ``completion_ids``, here each completion's UTF-8 bytes, ``trainer_state``,
   ``log_extra`` and ``log_metric``) and returns one finite real number or ``None`` per
   completion;
3. scoring the batch gives the values of scoring each sample alone (batch-size independence);
4. it accepts and ignores keyword arguments it does not know (TRL passes every dataset column);
5. calling it again gives the same values (determinism).

Values are compared with a relative and absolute tolerance of :data:`TOLERANCE`. A failure raises
:class:`~rewards.errors.RewardPluginError` saying which requirement failed and how.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rewards.errors import RewardPluginError
from rewards.protocol import RewardFn, TrainerState
from rewards.registry import resolve_reward
from rewards.validation import checked_call

PROMPTS = (
    "The movie was",
    "Summarize the plot in one sentence:",
    "Translate to French: I love this film.",
    "Write a haiku about autumn.",
    "Q: What is 2 + 2?\nA:",
    "Réponds en français :",
)
COMPLETIONS = (
    " absolutely wonderful, I loved every minute of it.",
    "",
    " J'adore ce film, c'est magnifique ! 🎬",
    " leaves fall, leaves fall, leaves fall\nquiet amber light\nthe year exhales",
    " 4",
    " 日本語のテキスト 😀 with mixed scripts: Ελληνικά, русский, naïve café.",
)
TOLERANCE = 1e-6

# Keyword arguments no reward knows: one per-sample column and one scalar, as TRL passes both.
_UNKNOWN_KWARGS = {
    "rlhf_env_conformance_column": [f"probe {i}" for i in range(len(COMPLETIONS))],
    "rlhf_env_conformance_flag": True,
}


def check_reward(
    spec: str | Callable[..., Any],
    /,
    *,
    columns: Mapping[str, Sequence[Any]] | None = None,
    **params: Any,
) -> None:
    """Raise :class:`RewardPluginError` unless the reward ``spec`` conforms (module docstring).

    ``spec`` and ``params`` are as for :func:`~rewards.registry.get_reward`. ``columns`` are
    per-sample keyword arguments for a reward that needs them (e.g. ``{"reference": [...]}``),
    each with one value per sample of :data:`COMPLETIONS`.
    """
    name, fn = resolve_reward(spec, **params)
    _check_name(name)
    columns = {key: list(values) for key, values in (columns or {}).items()}
    for key, values in columns.items():
        if len(values) != len(COMPLETIONS):
            raise ValueError(
                f"column {key!r} has {len(values)} values; the conformance batch has "
                f"{len(COMPLETIONS)} samples"
            )
    prompts, completions = list(PROMPTS), list(COMPLETIONS)

    returns = (
        "takes prompts=, completions= and TRL's other keyword arguments (declare **kwargs), "
        "returns one finite number or None per completion"
    )
    batch = _call(name, returns, fn, prompts, completions, **columns)
    alone = [
        _call(name, returns, fn, [p], [c], **{key: [v[i]] for key, v in columns.items()})[0]
        for i, (p, c) in enumerate(zip(prompts, completions, strict=True))
    ]
    _compare(name, "batch-size independence (a batch scores as its samples alone)", batch, alone)

    accepts = "accepts unknown keyword arguments (declare **kwargs)"
    extra = _call(name, accepts, fn, prompts, completions, **columns, **_UNKNOWN_KWARGS)
    _compare(name, "ignores unknown keyword arguments", batch, extra)

    again = _call(name, returns, fn, prompts, completions, **columns)
    _compare(name, "determinism (calling again gives the same values)", batch, again)


def _check_name(name: str) -> None:
    """A name is usable as a metric key: not empty, not ``<lambda>``, no spaces or '/'."""
    if not name or name.startswith("<") or any(ch.isspace() or ch == "/" for ch in name):
        raise RewardPluginError(
            f"reward {name!r} fails conformance requirement 'has a usable name': it is logged as "
            "reward/<name>, so give it a name without spaces or '/' (a def rather than a lambda, "
            "or set its __name__)"
        )


def _call(
    name: str,
    requirement: str,
    fn: RewardFn,
    prompts: list[str],
    completions: list[str],
    /,
    **kwargs: Any,
) -> list[float | None]:
    """:func:`checked_call` with TRL's keyword arguments, its error reworded as a failed
    ``requirement``."""
    ids = [list(c.encode()) for c in completions]
    trl_kwargs = {
        "completion_ids": ids,
        "completions_ids": ids,
        "trainer_state": TrainerState(),
        "log_extra": lambda column, values: None,
        "log_metric": lambda name, value: None,
    }
    try:
        return checked_call(fn, name, prompts, completions, **trl_kwargs, **kwargs)
    except RewardPluginError as exc:
        raise _failure(name, requirement, str(exc)) from exc


def _compare(
    name: str, requirement: str, expected: list[float | None], got: list[float | None]
) -> None:
    """Raise if ``got`` differs from ``expected`` anywhere beyond :data:`TOLERANCE`."""
    for i, (a, b) in enumerate(zip(expected, got, strict=True)):
        same = a is b is None or (
            a is not None
            and b is not None
            and math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
        )
        if not same:
            detail = f"{a!r}, then {b!r} at index {i} (completion {COMPLETIONS[i]!r})"
            raise _failure(name, requirement, detail)


def _failure(name: str, requirement: str, detail: str) -> RewardPluginError:
    return RewardPluginError(
        f"reward {name!r} fails conformance requirement '{requirement}': {detail}"
    )

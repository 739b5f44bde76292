"""Calling one reward plugin and checking what it returns (never a silent zero).

A plugin's output must be a sequence (a list; numpy arrays and torch tensors are accepted) of one
finite real number or ``None`` per completion. Anything else, and any exception the plugin raises,
becomes a :class:`~rewards.errors.RewardPluginError` that names the plugin, and for a bad value
its index, the value and the completion it scored. ``async def`` rewards are awaited with
asyncio, several of one batch concurrently (in a worker thread when the caller already runs an
event loop).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import numbers
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rewards.errors import RewardPluginError
from rewards.protocol import RewardFn


def call_reward(
    fn: RewardFn, name: str, prompts: list[str], completions: list[str], /, **kwargs: Any
) -> list[float]:
    """Call reward ``fn`` (logged as ``name``) on a batch; validated floats, ``None`` as 0.0."""
    return call_rewards({name: fn}, prompts, completions, **kwargs)[name]


def call_rewards(
    fns: dict[str, RewardFn], prompts: list[str], completions: list[str], /, **kwargs: Any
) -> dict[str, list[float]]:
    """:func:`call_reward` for several rewards by name; the ``async def`` ones run concurrently
    on one event loop, as TRL gathers them."""
    outputs = {name: _invoke(fn, name, prompts, completions, kwargs) for name, fn in fns.items()}
    pending = {name: output for name, output in outputs.items() if inspect.isawaitable(output)}
    if pending:
        outputs.update(zip(pending, _wait(_gather(pending))))
    return {
        name: [0.0 if v is None else v for v in _validated(name, output, completions)]
        for name, output in outputs.items()
    }


def checked_call(
    fn: RewardFn, name: str, prompts: list[str], completions: list[str], /, **kwargs: Any
) -> list[float | None]:
    """Call ``fn`` by keyword, as TRL does, and validate its output; ``None`` is kept."""
    output = _invoke(fn, name, prompts, completions, kwargs)
    if inspect.isawaitable(output):
        (output,) = _wait(_gather({name: output}))
    return _validated(name, output, completions)


def _invoke(fn: RewardFn, name: str, prompts: list, completions: list, kwargs: dict) -> Any:
    """``fn``'s output (an awaitable for an ``async def`` reward); its exceptions named."""
    try:
        return fn(prompts=prompts, completions=completions, **kwargs)
    except Exception as exc:
        raise RewardPluginError(f"reward {name!r} raised {type(exc).__name__}: {exc}") from exc


async def _gather(pending: dict[str, Any]) -> list:
    """The results of the rewards' awaitables, awaited together; their exceptions named."""

    async def named(name: str, awaitable: Any) -> Any:
        try:
            return await awaitable
        except Exception as exc:
            raise RewardPluginError(f"reward {name!r} raised {type(exc).__name__}: {exc}") from exc

    return await asyncio.gather(*(named(name, a) for name, a in pending.items()))


def _wait(coroutine: Any) -> Any:
    """The result of a coroutine, run on a fresh event loop (in a worker thread when this
    thread already runs one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop in this thread: the usual case
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _validated(name: str, output: Any, completions: list) -> list[float | None]:
    """A reward's output as validated floats (``None`` kept), or a named error."""
    if hasattr(output, "tolist"):  # numpy array, torch tensor
        output = output.tolist()
    if not isinstance(output, Sequence) or isinstance(output, (str, bytes)):
        raise RewardPluginError(
            f"reward {name!r} returned {type(output).__name__} {_short(output)}; "
            "it must return a list with one float or None per completion"
        )
    if len(output) != len(completions):
        raise RewardPluginError(
            f"reward {name!r} returned {len(output)} values for {len(completions)} completions"
        )
    return [_checked_value(name, i, value, completions[i]) for i, value in enumerate(output)]


def _checked_value(name: str, index: int, value: Any, completion: Any) -> float | None:
    """``value`` as a float (or None); raise if it is not a finite real number."""
    if value is None:
        return None
    if not isinstance(value, numbers.Real):
        problem = f"a {type(value).__name__} ({_short(value)}), not a real number or None"
    elif not math.isfinite(value):
        problem = f"{float(value)}, not a finite number"
    else:
        return float(value)
    raise RewardPluginError(
        f"reward {name!r} returned {problem} at index {index} (completion {_short(completion)})"
    )


def _short(obj: Any, limit: int = 60) -> str:
    """``repr(obj)`` cut to ``limit`` characters, for error messages."""
    text = repr(obj)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."

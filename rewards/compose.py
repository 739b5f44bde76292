"""Weighted sums of named rewards (each component logged under its name).

:func:`build_reward` turns a config value into a :class:`CompositeReward`. A spec is

- a registered name, a ``"package.module:attr"`` string or a callable: one component, weight 1;
- a mapping ``{"name": ..., "weight": 1.0, "params": {...}}`` (``name`` may be a callable);
- a list of those;
- a :class:`CompositeReward`, returned as is.

Each component is named by its registered name or its ``__name__`` (as TRL logs rewards); a name
used twice gets a suffix (``keyword``, ``keyword_2``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rewards.protocol import RewardFn
from rewards.registry import resolve_reward
from rewards.validation import call_rewards

_SPEC_KEYS = ("name", "weight", "params")


@dataclass
class Component:
    """One named, weighted reward of a composite."""

    name: str
    fn: RewardFn
    weight: float = 1.0

    def __post_init__(self) -> None:
        weight = self.weight
        if (
            not isinstance(weight, numbers.Real)
            or isinstance(weight, bool)
            or not math.isfinite(weight)
        ):
            raise ValueError(
                f"the weight of reward {self.name!r} must be a finite number, got {weight!r}"
            )
        self.weight = float(weight)


class CompositeReward:
    """A weighted sum of rewards: ``total_i = Σ_k weight_k · value_k,i`` (``None`` counts as 0).

    It is itself a reward function (TRL protocol, returning the totals); :meth:`score` also
    returns each component's unweighted values, for logging under the component's name.
    """

    def __init__(self, components: Iterable[Component]) -> None:
        self.components = tuple(components)
        if not self.components:
            raise ValueError("a composite reward needs at least one component")
        names = [component.name for component in self.components]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"component names must be unique; repeated: {repeated}")

    @property
    def __name__(self) -> str:  # what TRL (and a composite holding this one) logs it under
        return "+".join(component.name for component in self.components)

    def __repr__(self) -> str:
        terms = " + ".join(f"{c.weight:g}*{c.name}" for c in self.components)
        return f"CompositeReward({terms})"

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        return self.score(prompts, completions, **kwargs)[0]

    def score(
        self, prompts: list[str], completions: list[str], **kwargs: Any
    ) -> tuple[list[float], dict[str, list[float]]]:
        """``(totals, {component name: unweighted values})`` for a batch.

        ``kwargs`` (e.g. per-sample dataset columns) go to every component. Each component is
        validated by :func:`~rewards.validation.call_rewards` (``async def`` components run
        concurrently); an empty batch calls none of them.
        """
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        if not completions:
            return [], {component.name: [] for component in self.components}
        fns = {component.name: component.fn for component in self.components}
        values = call_rewards(fns, prompts, completions, **kwargs)
        totals = [
            math.fsum(c.weight * values[c.name][i] for c in self.components)
            for i in range(len(completions))
        ]
        return totals, values


def build_reward(spec: Any) -> CompositeReward:
    """A :class:`CompositeReward` from a spec (see the module docstring)."""
    if isinstance(spec, CompositeReward):
        return spec
    entries = spec if isinstance(spec, Sequence) and not isinstance(spec, str) else [spec]
    if not entries:
        raise ValueError("the reward spec is an empty list; give at least one reward")
    return CompositeReward(_unique_names([_component(entry) for entry in entries]))


def _component(entry: Any) -> Component:
    """One component from a name, path, callable or ``{"name", "weight", "params"}`` mapping."""
    if not isinstance(entry, Mapping):
        name, fn = resolve_reward(entry)
        return Component(name, fn)
    unknown = sorted(set(entry) - set(_SPEC_KEYS))
    if unknown or "name" not in entry:
        raise ValueError(
            f"a reward mapping has the keys {_SPEC_KEYS} ('name' required); got {dict(entry)!r}"
        )
    params = entry.get("params") or {}
    if not isinstance(params, Mapping):
        raise ValueError(
            f"the params of reward {entry['name']!r} must be a mapping, got {params!r}"
        )
    name, fn = resolve_reward(entry["name"], **params)
    return Component(name, fn, entry.get("weight", 1.0))


def _unique_names(components: list[Component]) -> list[Component]:
    """Rename repeated component names ``name_2``, ``name_3``, ... in order."""
    used: set[str] = set()
    for component in components:
        name, k = component.name, 1
        while name in used:
            k += 1
            name = f"{component.name}_{k}"
        component.name = name
        used.add(name)
    return components

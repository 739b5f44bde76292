"""Typed configs with help text: dataclass fields, YAML presets and dotted overrides (OmegaConf).

Shared by every trainer (the RL algorithms and the reward-model trainer): a preset is merged over
the dataclass defaults, then ``key=value`` overrides; unknown keys and wrong types are errors
naming the key. :func:`describe` lists every field with its help for ``--help-config``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

T = TypeVar("T")


def option(default: Any, help: str):
    """A dataclass field with a default (copied if mutable) and its help text."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def merge_sources(path: str | Path | None = None, overrides: Sequence[str] = ()):
    """The untyped merge of a YAML file and ``key=value`` overrides (an OmegaConf DictConfig)."""
    merged = OmegaConf.load(path) if path is not None else OmegaConf.create({})
    if overrides:
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
    return merged


def to_typed(cls: type[T], values) -> T:
    """An instance of the dataclass ``cls``: its defaults, then ``values`` (a mapping or
    DictConfig); unknown keys and wrong types are errors naming the key."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))


def load_structured(
    cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()
) -> T:
    """Defaults of ``cls``, then the YAML file at ``path``, then ``key=value`` overrides."""
    return to_typed(cls, merge_sources(path, overrides))


def to_dict(config: Any) -> dict:
    """A plain nested dict of a config object (for W&B and YAML)."""
    return OmegaConf.to_container(OmegaConf.structured(config))


def describe(cls: type, prefix: str = "") -> list[str]:
    """``key = default: help`` for every field, nested sections flattened with dots."""
    lines = []
    for f in fields(cls):
        factory = f.default_factory if callable(f.default_factory) else None
        default = f.default if factory is None else factory()
        if is_dataclass(default):
            lines += describe(type(default), f"{prefix}{f.name}.")
        else:
            lines.append(f"{prefix}{f.name} = {default!r}: {f.metadata.get('help', '')}")
    return lines

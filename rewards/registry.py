"""Finding a reward from a spec: a registered name, a ``"module:attr"`` path, a callable, or an
installed third-party plugin.

A string spec is resolved in this order:

1. a name registered with :func:`register_reward` (the built-ins register when ``rewards`` is
   imported);
2. ``"package.module:attr"``, imported with importlib (``attr`` may be dotted, ``Class.method``);
3. an entry point of the group ``rlhf_env.rewards`` declared by an installed distribution, e.g. in
   the plugin's ``pyproject.toml``::

       [project.entry-points."rlhf_env.rewards"]
       shouty = "my_pkg.rewards:shouty"

   Package metadata is read only for a name that is neither registered nor a path, so importing
   ``rewards`` or selecting a built-in never scans the installed distributions.

The object found is either a reward function, used as is, or a class (a factory) whose instances
are reward functions, created with the spec's ``params``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from rewards.errors import RewardPluginError, UnknownRewardError
from rewards.protocol import RewardFn

ENTRY_POINT_GROUP = "rlhf_env.rewards"

_REGISTRY: dict[str, Callable[..., Any]] = {}

_Obj = TypeVar("_Obj", bound=Callable[..., Any])


def register_reward(name: str) -> Callable[[_Obj], _Obj]:
    """Decorator for a reward function or class: make it selectable as ``name``.

    Registering a taken name is an error that names both objects; registering the same
    ``module:qualname`` again (as a module reload does) replaces the old one.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"a reward name must be a non-empty string without ':', got {name!r}")

    def decorator(obj: _Obj) -> _Obj:
        existing = _REGISTRY.get(name)
        if existing is not None and _where(existing) != _where(obj):
            raise RewardPluginError(
                f"reward name {name!r} is already registered to {_where(existing)}; "
                f"cannot also register {_where(obj)} under it"
            )
        _REGISTRY[name] = obj
        return obj

    return decorator


def get_reward(spec: str | Callable[..., Any], /, **params: Any) -> RewardFn:
    """The reward function for ``spec`` (see the module docstring); ``params`` go to a class.

    Raises :class:`UnknownRewardError` when ``spec`` names nothing, and
    :class:`RewardPluginError` when what it names cannot be made into a reward function.
    """
    return resolve_reward(spec, **params)[1]


def resolve_reward(spec: str | Callable[..., Any], /, **params: Any) -> tuple[str, RewardFn]:
    """``(name, reward function)`` for ``spec``; the name is the one a composite reward logs.

    The name is the registered or entry-point name when ``spec`` is one, otherwise the reward's
    ``__name__`` (TRL logs rewards by it), falling back to its class name.
    """
    if isinstance(spec, str):
        registered_name, obj = _lookup(spec)
    elif callable(spec):
        registered_name, obj = None, spec
    else:
        raise TypeError(
            "a reward spec is a registered name, a 'package.module:attr' string or a callable; "
            f"got {type(spec).__name__} {spec!r}"
        )
    fn = _instantiate(spec if isinstance(spec, str) else _where(spec), obj, params)
    return registered_name or _reward_name(fn), fn


def _reward_name(fn: Callable[..., Any]) -> str:
    """The name TRL would log ``fn`` under: its ``__name__``, else its class name."""
    return getattr(fn, "__name__", None) or type(fn).__name__


def available_rewards() -> dict[str, str]:
    """Every selectable reward name, mapped to where it comes from (reads package metadata)."""
    found = {name: f"registered {_where(obj)}" for name, obj in sorted(_REGISTRY.items())}
    for name, eps in sorted(_entry_points().items()):
        where = "; ".join(f"entry point {ep.value} from {_dist(ep)}" for ep in eps)
        if name in found:
            found[name] += f" (hides {where})"
        elif len(eps) > 1:
            found[name] = f"name collision, unusable: {where}"
        else:
            found[name] = where
    return found


def _lookup(spec: str) -> tuple[str | None, Any]:
    """The object a string spec names, with its registered or entry-point name (None for paths)."""
    if spec in _REGISTRY:
        return spec, _REGISTRY[spec]
    if ":" in spec:
        return None, _import_path(spec)
    eps = _entry_points()
    if spec not in eps:
        raise _unknown(spec, eps)
    return spec, _load_entry_point(spec, eps[spec])


def _import_path(spec: str) -> Any:
    """Import ``"package.module:attr"``; a missing module or attribute is an unknown reward."""
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise UnknownRewardError(f"reward path {spec!r} must look like 'package.module:attr'")
    try:
        obj = importlib.import_module(module_name)
    except Exception as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if missing and (missing == module_name or module_name.startswith(f"{missing}.")):
            raise UnknownRewardError(f"reward {spec!r}: no module named {missing!r}") from exc
        raise RewardPluginError(
            f"reward {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            raise UnknownRewardError(
                f"reward {spec!r}: {module_name!r} has no attribute {attr_path!r}"
            )
        obj = getattr(obj, attr)
    return obj


def _entry_points() -> dict[str, list[EntryPoint]]:
    """Installed entry points of the reward group, grouped by name."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, []).append(ep)
    return found


def _load_entry_point(name: str, eps: list[EntryPoint]) -> Any:
    """Load the one entry point called ``name``; several distributions declaring it is an error."""
    if len(eps) > 1:
        raise RewardPluginError(
            f"reward name {name!r} is declared by several installed packages: "
            + "; ".join(f"{_dist(ep)} ({ep.value})" for ep in eps)
            + ". Uninstall all but one, or select one by its 'package.module:attr' path."
        )
    (ep,) = eps
    try:
        return ep.load()
    except Exception as exc:
        raise RewardPluginError(
            f"reward {name!r} from {_dist(ep)} ({ep.value}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _instantiate(label: str, obj: Any, params: dict[str, Any]) -> RewardFn:
    """A class is a factory, called with ``params``; anything else is the reward itself."""
    if isinstance(obj, type):
        try:
            fn = obj(**params)
        except Exception as exc:
            raise RewardPluginError(
                f"could not create reward {label!r} with params {params}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    elif params:
        raise RewardPluginError(
            f"reward {label!r} is a function, not a class, so it takes no params; "
            f"got {sorted(params)}"
        )
    else:
        fn = obj
    if not callable(fn):
        raise RewardPluginError(f"reward {label!r} is {fn!r}, which is not callable")
    return fn


def _unknown(name: str, eps: dict[str, list[EntryPoint]]) -> UnknownRewardError:
    """The error for a name that is neither registered nor installed, listing those that are."""
    close = difflib.get_close_matches(name, [*_REGISTRY, *eps], n=3)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    return UnknownRewardError(
        f"unknown reward {name!r}.{hint} Registered: {', '.join(sorted(_REGISTRY)) or 'none'}. "
        f"From installed packages (entry-point group {ENTRY_POINT_GROUP!r}): "
        f"{', '.join(sorted(eps)) or 'none'}. "
        "A reward can also be given as 'package.module:attr' or as a Python callable."
    )


def _where(obj: Any) -> str:
    """``module:qualname`` of a reward object (its class's for an instance)."""
    named = obj if hasattr(obj, "__qualname__") else type(obj)
    return f"{named.__module__}:{named.__qualname__}"


def _dist(ep: EntryPoint) -> str:
    """``name version`` of the distribution that declares an entry point."""
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"

"""Controllers that own β, the KL-to-reference coefficient of the per-token reward.

docs/formulation.md eq. 2: ``r_t = −β·KL_t (+ score on the last token)`` with β fixed or
adaptive. The agent holds one controller, calls :meth:`KLController.update` with the KL measured
on each batch of rollouts, and pushes the returned β to its environments. Three rules:

- ``fixed``: β never changes.
- ``adaptive``: the PPO-KL rule (eq. 16; Schulman et al. 2017, "Proximal Policy Optimization
  Algorithms", section 4): halve β when the measured KL d < target/1.5, double it when
  d > target·1.5, else keep it.
- ``proportional``: eq. 17; Ziegler et al. 2019, "Fine-Tuning Language Models from Human
  Preferences" (TRL's ``AdaptiveKLController``): e = clip(d/target − 1, −0.2, 0.2),
  β ← β·(1 + e·n/horizon).

The adaptive and proportional rules take an optional floor ``min_beta``: while the policy is
still close to the reference both rules keep lowering β (measured KL below target), and without
a floor β can collapse to ~0 just before the KL takes off, when the controller then needs many
iterations to raise it again (seen on SmolLM2: β from 0.1 down to 0.014, then KL 0.19 > 0.1).

``state_dict()`` / ``load_state_dict()`` carry β exactly (a Python float) for resume.
"""

from __future__ import annotations

import abc
import math
from typing import Any


class KLController(abc.ABC):
    """Base class: holds ``beta``; subclasses set ``kind`` and implement ``_next_beta``."""

    kind: str

    def __init__(self, beta: float, min_beta: float = 0.0):
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be finite and >= 0, got {beta}")
        if not (math.isfinite(min_beta) and 0 <= min_beta <= beta):
            raise ValueError(f"min_beta must lie in [0, beta={beta}], got {min_beta}")
        self.beta, self.min_beta = float(beta), float(min_beta)

    def update(self, measured_kl: float, n_steps: int = 1) -> float:
        """Adjust β from the KL measured over ``n_steps`` samples; return the new β."""
        measured_kl = float(measured_kl)
        if not math.isfinite(measured_kl):
            raise ValueError(f"measured KL must be finite, got {measured_kl}")
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        self.beta = max(self.min_beta, float(self._next_beta(measured_kl, n_steps)))
        return self.beta

    @abc.abstractmethod
    def _next_beta(self, measured_kl: float, n_steps: int) -> float:
        """The controller's rule: β after measuring ``measured_kl`` over ``n_steps`` samples."""

    def state_dict(self) -> dict[str, Any]:
        """The controller's mutable state: its kind (checked on load) and β."""
        return {"kind": self.kind, "beta": self.beta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore β saved by :meth:`state_dict` of a controller of the same kind."""
        if state.get("kind") != self.kind:
            raise ValueError(
                f"state of a {state.get('kind')!r} KL controller, this is {self.kind!r}"
            )
        self.beta = float(state["beta"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(beta={self.beta})"


def _check_target(target: float) -> None:
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"KL target must be finite and > 0, got {target}")


class FixedKLController(KLController):
    """β stays as given; ``update`` only validates the measurement."""

    kind = "fixed"

    def _next_beta(self, measured_kl: float, n_steps: int) -> float:
        return self.beta


class AdaptiveKLController(KLController):
    """The PPO-KL rule (eq. 16): β/factor below target/tolerance, β·factor above target·tolerance.

    Args:
        beta: initial β (> 0; a zero β could never move).
        target: the KL d_targ to hold.
        tolerance: 1.5 in the paper; d within [target/tolerance, target·tolerance] keeps β.
        factor: 2 in the paper.
        min_beta: floor of β (0: none).
    """

    kind = "adaptive"

    def __init__(
        self,
        beta: float,
        target: float,
        tolerance: float = 1.5,
        factor: float = 2.0,
        min_beta: float = 0.0,
    ):
        super().__init__(beta, min_beta)
        _check_target(target)
        if beta <= 0 or tolerance <= 1 or factor <= 1:
            raise ValueError(
                f"need beta > 0, tolerance > 1, factor > 1; got {beta}, {tolerance}, {factor}"
            )
        self.target, self.tolerance, self.factor = float(target), float(tolerance), float(factor)

    def _next_beta(self, measured_kl: float, n_steps: int) -> float:
        # docs/formulation.md eq. 16 (PPO-KL): d < target/1.5 → β/2; d > target·1.5 → β·2.
        if measured_kl < self.target / self.tolerance:
            return self.beta / self.factor
        if measured_kl > self.target * self.tolerance:
            return self.beta * self.factor
        return self.beta


class ProportionalKLController(KLController):
    """Ziegler et al. 2019's proportional controller (TRL's ``AdaptiveKLController``).

    Args:
        beta: initial β (> 0).
        target: the KL to hold.
        horizon: how many samples it takes β to move by the full clipped error (TRL: 10000).
        error_clip: bound on the relative error d/target − 1 (0.2 in the paper).
        min_beta: floor of β (0: none).

    ``n_steps`` in :meth:`update` is the number of samples the measurement covers (TRL passes
    the batch size); ``n_steps · error_clip`` must stay below ``horizon``, which keeps β positive.
    """

    kind = "proportional"

    def __init__(
        self,
        beta: float,
        target: float,
        horizon: float,
        error_clip: float = 0.2,
        min_beta: float = 0.0,
    ):
        super().__init__(beta, min_beta)
        _check_target(target)
        if beta <= 0 or horizon <= 0 or not 0 < error_clip < 1:
            raise ValueError(
                f"need beta > 0, horizon > 0, 0 < error_clip < 1; got {beta}, {horizon}, "
                f"{error_clip}"
            )
        self.target, self.horizon, self.error_clip = float(target), float(horizon), error_clip

    def _next_beta(self, measured_kl: float, n_steps: int) -> float:
        if n_steps * self.error_clip >= self.horizon:
            raise ValueError(
                f"n_steps={n_steps} is too large for horizon={self.horizon}: "
                f"below target β would fall by {self.error_clip}·n/horizon >= 100%"
            )
        # docs/formulation.md eq. 17: e = clip(d/target − 1, ±0.2).
        error = min(max(measured_kl / self.target - 1, -self.error_clip), self.error_clip)
        # β ← β·(1 + e·n_steps/horizon).
        return self.beta * (1 + error * n_steps / self.horizon)


KL_CONTROLLERS: dict[str, type[KLController]] = {
    cls.kind: cls for cls in (FixedKLController, AdaptiveKLController, ProportionalKLController)
}


def make_kl_controller(kind: str, **kwargs: Any) -> KLController:
    """Build a controller by kind (``fixed``, ``adaptive``, ``proportional``) from its arguments."""
    try:
        cls = KL_CONTROLLERS[kind]
    except KeyError:
        raise ValueError(
            f"unknown KL controller {kind!r}; choose one of {sorted(KL_CONTROLLERS)}"
        ) from None
    return cls(**kwargs)

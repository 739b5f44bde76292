"""Guardrails that act on KL spikes, entropy collapse and reward hacking.

Every iteration the training step measures the sampled batch (:func:`batch_signals`,
docs/formulation.md eqs. 39-42): its KL per token, distinct-2 of the responses pooled, their
mean repetition rate, their mean length and, for a composite reward, the share of the score's
weighted contributions that one component holds. A KL spike (eq. 42) makes the training step
skip that iteration's update. The driver's :class:`Guard` then reads the iteration's record and
acts: on a spike it raises β, and after ``strikes`` spikes in a row it rolls the policy back to
the last *good* checkpoint; on entropy collapse or a hacking signal (diversity lost, repetition, the
length drifting from the reference policy's, one reward component dominating) it warns, raises
β (``repair``) or stops the run. Each event is a ``guard/*`` metric, a W&B alert and one console
line saying what happened and what was done.

A checkpoint is good once the batch sampled from its weights is calm: the weights saved after
iteration t are first measured by iteration t + 1's batch, so a checkpoint stays a *candidate*
until then, and a spike in that batch discards it (a checkpoint saved during a spike streak holds
the drifted weights). A rollback restores the last good checkpoint; when the policy spikes into
a rollback again ``max_rollbacks`` times before a new checkpoint proves good, or no checkpoint is
good yet, rolling back does not repair the run and the guard stops it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewards.builtin.rules import words
from rlhf_env.data.typed_config import option as _f
from rlhf_env.envs.kl import kl_per_token

ACTIONS = ("warn", "repair", "stop")


@dataclass
class GuardConfig:
    enabled: bool = _f(True, "Watch every iteration and act (see agents/core/guard.py).")
    kl_spike_factor: float = _f(
        3.0, "A KL spike: KL per token above this times kl.target (docs/formulation.md eq. 42)..."
    )
    kl_cap: float = _f(1.0, "... or above this absolute cap. A spike skips the update.")
    beta_raise: float = _f(2.0, "β is multiplied by this on a spike or a repair...")
    beta_floor: float = _f(0.05, "... and raised to at least this (a β of 0 included).")
    strikes: int = _f(
        3, "Spikes in a row after which the policy rolls back to the last good checkpoint."
    )
    max_rollbacks: int = _f(
        2, "Rollbacks to one good checkpoint after which a new streak stops the run."
    )
    entropy_floor: float = _f(0.05, "Entropy collapse: mean token entropy (nats) below this.")
    distinct2_floor: float = _f(
        0.15, "Hacking: distinct-2 of the batch's responses below this (eq. 39)."
    )
    repetition_ceiling: float = _f(0.5, "Hacking: mean repetition rate above this (eq. 40).")
    length_drift: float = _f(
        1.0, "Hacking: |length drift| against the reference policy above this (eq. 41)."
    )
    dominance: float = _f(
        0.95,
        "Hacking: one component's share of a composite score's weighted "
        "contributions above this (two or more components).",
    )
    on_hacking: str = _f(
        "repair",
        "What entropy collapse and hacking signals do: warn, repair (raise β) or stop the run.",
    )

    def __post_init__(self) -> None:
        if self.on_hacking not in ACTIONS:
            raise ValueError(f"guard.on_hacking must be one of {ACTIONS}, got {self.on_hacking!r}")
        if self.beta_raise < 1 or self.strikes < 1 or self.max_rollbacks < 0:
            raise ValueError(
                "guard.beta_raise must be >= 1, guard.strikes >= 1 and guard.max_rollbacks >= 0"
            )

    def spike_threshold(self, kl_target: float) -> float:
        """The KL per token above which a batch is a spike (eq. 42)."""
        return min(self.kl_spike_factor * kl_target, self.kl_cap)


def batch_signals(episodes) -> dict[str, float]:
    """The ``guard/*`` measurements of a batch of finished episodes (eqs. 39-42)."""
    texts = [[w.casefold() for w in words(e.custom_data["completion"])] for e in episodes]
    bigrams = [list(zip(ws, ws[1:])) for ws in texts]
    pooled = [b for bs in bigrams for b in bs]
    repetition = [(len(bs) - len(set(bs))) / len(bs) if bs else 0.0 for bs in bigrams]
    signals = {
        "guard/distinct_2": len(set(pooled)) / len(pooled) if pooled else 1.0,
        "guard/repetition": sum(repetition) / len(repetition),
        "guard/kl": kl_per_token(
            [e.custom_data["kl"] for e in episodes], [len(e) for e in episodes]
        ),
    }
    contributions = [e.custom_data["contributions"] for e in episodes]
    if len(contributions[0]) >= 2:
        totals = {name: sum(abs(c[name]) for c in contributions) for name in contributions[0]}
        signals["guard/dominance"] = max(totals.values()) / max(sum(totals.values()), 1e-12)
    return signals


@dataclass
class Guard:
    """The driver's side: decisions on an iteration's record (see the module docstring)."""

    config: GuardConfig
    strikes: int = 0
    reference_length: float | None = None  # the first iteration's: the policy is the reference
    candidate: str | None = None  # the last checkpoint saved, not yet measured
    good: str | None = None  # the last checkpoint whose weights sampled a calm batch
    rollbacks: int = 0  # rollbacks to ``good`` so far

    def check(self, record: dict, entropy: float | None) -> list[tuple[str, str]]:
        """``(event, action)`` pairs of this iteration: action ``raise_beta``, ``rollback``
        (to :attr:`good`), ``stop`` or ``warn``; also adds the ``guard/*`` flags and the length
        drift to the record."""
        if not self.config.enabled:
            return []
        events = []
        if record.get("guard/kl_spike"):
            self.candidate = None  # its weights sampled this spike
            self.strikes += 1
            happened = f"KL spike: {record['guard/kl']:.3f} per token (update skipped)"
            if self.strikes < self.config.strikes:
                events.append((happened, "raise_beta"))
            elif self.good is None or self.rollbacks >= self.config.max_rollbacks:
                events.append((self._why_not_rolled_back(happened), "stop"))
            else:
                self.strikes = 0
                self.rollbacks += 1
                events.append((happened, "rollback"))
        else:
            self.strikes = 0
            if self.candidate is not None:
                self.good, self.candidate, self.rollbacks = self.candidate, None, 0
        length = record.get("reward/response_length")
        if length is not None:
            self.reference_length = self.reference_length or length
            record["guard/length_drift"] = length / self.reference_length - 1
        hacking = self.config.on_hacking
        action = {"warn": "warn", "repair": "raise_beta", "stop": "stop"}[hacking]
        for flag, happened in self._hacking_signals(record, entropy):
            record[flag] = 1.0
            events.append((f"{happened} (guard.on_hacking={hacking})", action))
        return events

    def _why_not_rolled_back(self, happened: str) -> str:
        streak = f"{happened}, {self.strikes} in a row"
        if self.good is None:
            return f"{streak}, and no checkpoint has sampled a calm batch yet to roll back to"
        return (
            f"{streak}, after {self.rollbacks} rollback(s) to {self.good}: rolling back does "
            "not repair the run (lower the learning rate or raise kl.init_coef)"
        )

    def saved(self, checkpoint: str) -> None:
        """A checkpoint was just written: it becomes good if the next batch is calm."""
        if self.config.enabled:
            self.candidate = checkpoint

    def _hacking_signals(self, record: dict, entropy: float | None):
        c = self.config
        if entropy is not None and entropy < c.entropy_floor:
            yield "guard/entropy_collapse", f"entropy collapse: {entropy:.3f} nats per token"
        if record.get("guard/distinct_2", 1.0) < c.distinct2_floor:
            yield (
                "guard/low_diversity",
                (f"responses lost diversity: distinct-2 {record['guard/distinct_2']:.3f}"),
            )
        if record.get("guard/repetition", 0.0) > c.repetition_ceiling:
            yield (
                "guard/repetitive",
                (f"responses repeat themselves: repetition rate {record['guard/repetition']:.3f}"),
            )
        if abs(record.get("guard/length_drift", 0.0)) > c.length_drift:
            yield (
                "guard/length_drift_alarm",
                (f"response length drifted by {record['guard/length_drift']:+.0%}"),
            )
        if record.get("guard/dominance", 0.0) > c.dominance:
            yield (
                "guard/dominated",
                (f"one reward component holds {record['guard/dominance']:.0%} of the score"),
            )

    def raised(self, beta: float) -> float:
        return max(beta * self.config.beta_raise, self.config.beta_floor)

    def state_dict(self) -> dict:
        return {
            "strikes": self.strikes,
            "reference_length": self.reference_length,
            "candidate": self.candidate,
            "good": self.good,
            "rollbacks": self.rollbacks,
        }

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)

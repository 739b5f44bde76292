"""What the labels say: counts per labeller, agreement between labellers (docs/formulation.md
eq. 45) and a reward model's pairwise accuracy on fresh labels (eq. 21 on the judgments made
after it was trained)."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rlhf_env.data.judgments import RANKED, SKIP, Judgment, preference_rows
from rlhf_env.data.preferences import parse_preferences


def outcome(judgment: Judgment) -> tuple[int, ...] | str | None:
    """What two labellers must both have said to agree: the ranking, tie or both bad (None for a
    skip)."""
    if judgment.choice == SKIP:
        return None
    return tuple(judgment.ranking) if judgment.choice == RANKED else judgment.choice


def choices_by_labeller(judgments: Sequence[Judgment]) -> dict[str, Counter]:
    """How often each labeller made each choice."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in judgments:
        counts[row.labeller][row.choice] += 1
    return dict(counts)


def labeller_agreement(judgments: Sequence[Judgment]) -> dict[str, float | int | None]:
    """Eq. 45: ``agreement`` (None without any comparison judged twice), over ``comparisons``
    judged by two or more labellers and ``pairs`` of their labellers."""
    outcomes: dict[str, dict[str, object]] = defaultdict(dict)
    for row in judgments:
        value = outcome(row)
        if value is not None:
            outcomes[row.comparison][row.labeller] = value  # a labeller's latest judgment
    agree = pairs = comparisons = 0
    for by_labeller in outcomes.values():
        if len(by_labeller) < 2:
            continue
        comparisons += 1
        for a, b in itertools.combinations(by_labeller.values(), 2):
            pairs += 1
            agree += a == b
    return {
        "agreement": agree / pairs if pairs else None,
        "comparisons": comparisons,
        "pairs": pairs,
    }


def trained_at(reward_model: str | Path) -> datetime:
    """When a reward model was saved (its ``reward_model.json`` is written last)."""
    from rewards.reward_model import MODEL_FILE

    path = Path(reward_model) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{reward_model} is not a trained reward model (no {MODEL_FILE}); train one with "
            "`rlhf-env reward-model train`"
        )
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def fresh_accuracy(
    judgments: Sequence[Judgment], reward_model: str | Path, since: datetime | None = None
) -> dict[str, float | int | str]:
    """The reward model's pairwise accuracy (eq. 21) on the ranked judgments made after
    ``since`` (default: when it was trained): ``accuracy``, ``labels``, ``since``."""
    from rewards.reward_model import evaluate, load_reward_model

    since = since or trained_at(reward_model)
    fresh = [row for row in judgments if row.time > since]
    rows = preference_rows(fresh)
    if not rows:
        raise ValueError(
            f"no ranked judgment made after {since:%Y-%m-%d %H:%M:%S} UTC to test the reward "
            "model on; label responses of the new policy first"
        )
    result = evaluate(load_reward_model(reward_model), parse_preferences(rows))
    return {
        "accuracy": result["pairwise_accuracy"],
        "labels": len(rows),
        "since": since.isoformat(),
    }

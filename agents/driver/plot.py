"""The reward curve of a run as a PNG: training score (or DPO accuracy) and KL per iteration,
held-out evaluations."""

from __future__ import annotations

import json
from pathlib import Path

from agents.core import metric_names as M


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``reward_curve.png`` (or ``out``) for a run folder; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    train, evals = _records(run_dir / M.METRICS_FILE), _records(run_dir / M.EVAL_FILE)
    if not train:
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}: has this run trained?")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    # Online runs have training score, KL and β per iteration; offline DPO has its pairs'
    # accuracy, and evaluations may add the held-out implicit-reward accuracy.
    _line(top, train, M.SCORE, "train score (batch mean)", "-", alpha=0.6)
    _line(top, evals, M.EVAL_SCORE, "held-out score", "o-")
    _line(top, train, M.DPO_ACCURACY, "train pairs: implicit-reward accuracy", "-", alpha=0.6)
    _line(top, evals, M.EVAL_ACCURACY, "held-out pairs: implicit-reward accuracy", "s-")
    top.set_ylabel("score / accuracy")
    top.legend()
    top.set_title(run_dir.name)
    _line(bottom, train, M.KL, "KL to reference per token", "-")
    _line(bottom, evals, M.EVAL_KL, "held-out KL per token", "o-")
    bottom.set_ylabel("KL per token")
    bottom.set_xlabel("iteration")
    bottom.legend(loc="upper left")
    betas = [r.get(M.KL_COEF, 0) for r in train]
    if min(betas) > 0:  # β spans decades: its own log axis (DPO runs may have β = 0)
        beta = bottom.twinx()
        beta.semilogy([r["iteration"] for r in train], betas, "k--", alpha=0.5, label="β (right)")
        beta.set_ylabel("β")
        beta.legend(loc="upper right")
    out = Path(out) if out else run_dir / "reward_curve.png"
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _line(axes, records: list[dict], key: str, label: str, style: str, **kwargs) -> None:
    """Plot ``key`` over the iterations of the records that have it (nothing if none do)."""
    points = [(r["iteration"], r[key]) for r in records if key in r]
    if points:
        axes.plot(*zip(*points), style, label=label, **kwargs)

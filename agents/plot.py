"""The reward curve of a run as a PNG: training score and KL per iteration, held-out evaluations."""

from __future__ import annotations

import json
from pathlib import Path


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``reward_curve.png`` (or ``out``) for a run folder; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    train, evals = _records(run_dir / "metrics.jsonl"), _records(run_dir / "eval.jsonl")
    if not train:
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}: has this run trained?")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    steps = [r["iteration"] for r in train]
    top.plot(steps, [r["reward/score"] for r in train], label="train score (batch mean)", alpha=.6)
    if evals:
        top.plot([r["iteration"] for r in evals], [r["eval/score"] for r in evals], "o-",
                 label="held-out score")
    top.set_ylabel("reward-model score")
    top.legend()
    top.set_title(run_dir.name)
    bottom.plot(steps, [r["reward/kl"] for r in train], label="KL to reference per token")
    if evals:
        bottom.plot([r["iteration"] for r in evals], [r["eval/kl_per_token"] for r in evals],
                    "o-", label="held-out KL per token")
    bottom.set_ylabel("KL per token")
    bottom.set_xlabel("iteration")
    bottom.legend(loc="upper left")
    betas = [r["policy/kl_coef"] for r in train]
    if min(betas) > 0:  # β spans decades: its own log axis (DPO runs may have β = 0)
        beta = bottom.twinx()
        beta.semilogy(steps, betas, "k--", alpha=.5, label="β (right)")
        beta.set_ylabel("β")
        beta.legend(loc="upper right")
    out = Path(out) if out else run_dir / "reward_curve.png"
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

"""The reward-curve PNG of a run folder, for PPO (β > 0) and DPO (β = 0) runs."""

import json

import pytest

from agents.driver.plot import plot_run


@pytest.mark.parametrize("beta", [0.05, 0.0])
def test_plot_writes_a_png(tmp_path, beta):
    rows = [
        {"iteration": i, "reward/score": 0.1 * i, "reward/kl": 0.01 * i, "policy/kl_coef": beta}
        for i in (1, 2, 3)
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "eval.jsonl").write_text(
        json.dumps({"iteration": 0, "eval/score": 0.0, "eval/kl_per_token": 0.0}) + "\n"
    )
    out = plot_run(tmp_path)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_needs_metrics(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        plot_run(tmp_path)

"""Offline DPO on a pair table end to end on the tiny model: tables, learning, exact resume."""

import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from agents.core.registry import get_algorithm
from agents.dpo.offline_data import REF_CHOSEN, PairTable, reference_logprobs
from agents.driver.checkpoints import latest_checkpoint
from agents.driver.loop import train
from rlhf_env.data.models import load_causal_lm

GOOD = "good great love wonderful amazing best fun happy beautiful nice brilliant".split()
BAD = "bad awful terrible boring worst hate sad dull poor ugly waste".split()
SUBJECTS = "the movie;the film;this story;the plot;the acting;the music;that scene".split(";")


def sentiment_pairs(path, n=400, seed=0):
    """Prompts of tiny-vocabulary words; the chosen response praises, the rejected one pans."""
    rng = random.Random(seed)

    def response(words):
        return " " + " ".join(
            rng.choice(("was", "is", "so", "very", "really", "and")) + " " + rng.choice(words)
            for _ in range(rng.randint(1, 3))
        )

    with open(path, "w") as f:
        for _ in range(n):
            f.write(
                json.dumps(
                    {
                        "prompt": rng.choice(SUBJECTS),
                        "chosen": response(GOOD),
                        "rejected": response(BAD),
                    }
                )
                + "\n"
            )
    return str(path)


@pytest.fixture
def offline_config(tiny_config, tmp_path):
    data = sentiment_pairs(tmp_path / "pairs.jsonl")
    preset = tmp_path / "dpo_offline_tiny.yaml"
    preset.write_text(
        "algorithm: dpo_offline\ntask:\n  id: rlhf_env/Tiny-v0\n"
        f"dpo:\n  dataset: {data}\n  lr: 3.0e-3\n  beta: 0.1\n  pairs_per_iteration: 32\n"
        "  epochs: 1\n  minibatch_pairs: 16\n  eval_pairs: 40\n"
        "run:\n  name: dpo_offline\n  eval_episodes: 0\n  eval_every: 0\n"
    )

    def make(*overrides):
        return tiny_config(*overrides, preset=str(preset))

    return make


def test_pair_tables_hold_the_reference_logprobs(offline_config):
    config = offline_config("dpo.max_pairs=50")
    algorithm = get_algorithm("dpo_offline")
    algorithm.prepare(config)
    paths = algorithm.table_paths(config)
    train_table, test_table = (pq.read_table(paths[s]) for s in ("train", "test"))
    assert (train_table.num_rows, test_table.num_rows) == (50, 40)
    rows = train_table.slice(0, 5).to_pydict()
    expected = reference_logprobs(load_causal_lm("tiny"), rows["prompt_ids"], rows["chosen_ids"])
    for got, want, ids in zip(rows[REF_CHOSEN], expected, rows["chosen_ids"]):
        assert len(got) == len(ids)  # one reference log-prob per response token
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_table_is_read_in_one_fixed_order_wrapping_around(tmp_path):
    path = tmp_path / "t.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"prompt_ids": [[i] for i in range(5)]}), path)
    table = PairTable(path)
    assert [row[0] for row in table.batch(0, 2)["prompt_ids"]] == [0, 1]
    assert [row[0] for row in table.batch(2, 2)["prompt_ids"]] == [4, 0]  # wraps around


def test_offline_dpo_learns_and_resumes_exactly(offline_config):
    """8 iterations straight vs 4 + checkpoint + resume + 4: the same losses and weights."""
    straight = offline_config("run.iterations=8", "run.checkpoint_every=8", "run.name=straight")
    records = train(straight, progress=False)
    evals = [
        json.loads(line) for line in (straight.run_dir / "eval.jsonl").read_text().splitlines()
    ]
    assert evals[0]["eval/rewards/accuracy"] == 0.0  # the policy is the reference
    assert evals[-1]["eval/rewards/accuracy"] > 0.9, evals
    assert evals[-1]["eval/rewards/margin"] > 0
    assert records[-1]["dpo/loss"] < records[0]["dpo/loss"]

    resumed = offline_config("run.iterations=4", "run.checkpoint_every=4", "run.name=resumed")
    first = train(resumed, progress=False)
    resumed.run.iterations = 8
    second = train(resumed, progress=False)
    assert [r["iteration"] for r in first + second] == list(range(1, 9))
    for a, b in zip(records, first + second):
        assert a["dpo/loss"] == pytest.approx(b["dpo/loss"], rel=1e-4)
    exported = [
        load_causal_lm(str(latest_checkpoint(c.run_dir) / "policy")) for c in (straight, resumed)
    ]
    for p, q in zip(*(m.parameters() for m in exported)):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-5)


def test_pair_tables_from_the_labelling_database(tmp_path):
    """Offline DPO reads `rlhf-env label`'s database by its URL: every ranked judgment, a
    ranking of 3 as its 3 ordered pairs, with the held-out split by comparison."""
    from agents.core.config import load_config
    from rlhf_env.data.judgments import Comparison, JudgmentStore

    url = f"sqlite:///{tmp_path / 'labels.db'}"
    store = JudgmentStore(url)
    rows = [json.loads(line) for line in open(sentiment_pairs(tmp_path / "p.jsonl", n=20))]
    for row in rows:
        shown = Comparison(row["prompt"], (row["rejected"], row["chosen"]), "tiny", "t", {})
        store.record(shown, "ann", "ranked", [1, 0])
    store.record(Comparison("the plot", (" so good", " so bad", " so dull"), "tiny", "t", {}),
                 "ann", "ranked", [0, 2, 1])  # fmt: skip
    store.record(Comparison("the film", (" good", " bad"), "tiny", "t", {}), "ann", "tie")
    config = load_config(
        "configs/dpo_offline.yaml",
        [
            "task.id=rlhf_env/Tiny-v0",
            "task.overrides={}",
            f"dpo.dataset={url}",
            f"run.output_dir={tmp_path}",
            "run.wandb=disabled",
        ],
    )
    algorithm = get_algorithm("dpo_offline")
    algorithm.prepare(config)
    paths = algorithm.table_paths(config)
    train_table, test_table = (pq.read_table(paths[s]) for s in ("train", "test"))
    # 21 ranked comparisons: 0, 10 and 20 (the ranking of 3) held out.
    assert (train_table.num_rows, test_table.num_rows) == (18, 2 + 3)

"""Offline DPO on RLlib's offline data path, end to end on the tiny model."""

import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from agents.dpo.offline import prepare_pair_tables, stack_pairs
from agents.dpo.prelearner import PreferencePreLearner
from agents.dpo.offline_data import REF_CHOSEN, response_logprobs
from agents.driver.loop import latest_checkpoint, train
from rlhf_env.data.models import load_causal_lm

GOOD = "good great love wonderful amazing best fun happy beautiful nice brilliant".split()
BAD = "bad awful terrible boring worst hate sad dull poor ugly waste".split()
SUBJECTS = "the movie;the film;this story;the plot;the acting;the music;that scene".split(";")


def sentiment_pairs(path, n=400, seed=0):
    """Prompts of tiny-vocabulary words; the chosen response praises, the rejected one pans."""
    rng = random.Random(seed)

    def response(words):
        return " " + " ".join(rng.choice(("was", "is", "so", "very", "really", "and")) + " "
                              + rng.choice(words) for _ in range(rng.randint(1, 3)))

    with open(path, "w") as f:
        for _ in range(n):
            f.write(json.dumps({"prompt": rng.choice(SUBJECTS), "chosen": response(GOOD),
                                "rejected": response(BAD)}) + "\n")
    return str(path)


@pytest.fixture
def offline_config(tiny_config, tmp_path):
    data = sentiment_pairs(tmp_path / "pairs.jsonl")

    def make(*overrides):
        return tiny_config("algorithm=dpo_offline", f"dpo.dataset={data}", "dpo.lr=3e-3",
                           "dpo.beta=0.1", "dpo.pairs_per_iteration=32", "dpo.epochs=1",
                           "dpo.minibatch_pairs=16", "dpo.eval_pairs=40",
                           "run.eval_episodes=0", "run.eval_every=0", *overrides)

    return make


def test_pair_tables_hold_the_reference_logprobs(offline_config):
    config = offline_config("dpo.max_pairs=50")
    paths = prepare_pair_tables(config)
    train_table, test_table = (pq.read_table(paths[s]) for s in ("train", "test"))
    assert (train_table.num_rows, test_table.num_rows) == (50, 40)
    rows = train_table.slice(0, 5).to_pydict()
    expected = response_logprobs(load_causal_lm("tiny"), rows["prompt_ids"], rows["chosen_ids"])
    np.testing.assert_allclose(rows[REF_CHOSEN], expected.numpy(), rtol=1e-5, atol=1e-5)


def test_prelearner_rows_stack_into_chosen_first_rows(offline_config):
    config = offline_config()
    pairs = {"prompt_ids": [[5, 6], [7]], "chosen_ids": [[8], [9, 10, 11]],
             "rejected_ids": [[12, 13], [14]], "ref_chosen": [-1.0, -2.0],
             "ref_rejected": [-3.0, -4.0]}

    class Settings:
        learner_config_dict = {"prompt_width": 4, "response_width": 5, "loss_type": "sigmoid"}

    out = PreferencePreLearner(config=Settings())(pairs)
    assert out["default_policy/chosen_input_ids"].shape == (2, 9)
    rows = stack_pairs({key.split("/", 1)[1]: value for key, value in out.items()})
    # Common padding cut: prompts 2 wide, responses 3 long; chosen rows first.
    assert rows["input_ids"].tolist() == [[5, 6, 8, 0, 0], [0, 7, 9, 10, 11],
                                          [5, 6, 12, 13, 0], [0, 7, 14, 0, 0]]
    assert rows["prompt_width"].tolist() == [2, 2, 2, 2]
    assert rows["loss_mask"].sum(-1).tolist() == [1, 3, 2, 1]
    assert rows["ref_logps"].tolist() == [-1.0, -2.0, -3.0, -4.0]
    del config


def test_offline_dpo_learns_and_resumes_exactly(offline_config):
    """8 iterations straight vs 4 + checkpoint + resume + 4: the same losses and weights."""
    straight = offline_config("run.iterations=8", "run.checkpoint_every=8", "run.name=straight")
    records = train(straight, progress=False)
    evals = [json.loads(line) for line in (straight.run_dir / "eval.jsonl").read_text().splitlines()]
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
    exported = [load_causal_lm(str(latest_checkpoint(c.run_dir) / "policy"))
                for c in (straight, resumed)]
    for p, q in zip(*(m.parameters() for m in exported)):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-5)

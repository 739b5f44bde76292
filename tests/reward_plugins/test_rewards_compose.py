"""Composite rewards: weighted sums with each component's values under its own name."""

from __future__ import annotations

import pytest

from rewards import CompositeReward, RewardPluginError, build_reward


def first(prompts, completions, **kwargs):
    return [1.0, 2.0]


def second(prompts, completions, **kwargs):
    return [None, 4.0]


def test_weighted_sum_and_components_by_hand():
    reward = build_reward([first, {"name": second, "weight": -0.5}])
    totals, components = reward.score(["p", "q"], ["a", "b"])
    assert totals == [1.0 + 0.0, 2.0 - 0.5 * 4.0]
    assert components == {"first": [1.0, 2.0], "second": [0.0, 4.0]}
    assert reward(prompts=["p", "q"], completions=["a", "b"]) == totals  # TRL protocol
    assert reward.__name__ == "first+second"


def test_builtins_with_params_and_duplicate_names():
    reward = build_reward(
        [
            {"name": "keyword", "params": {"keywords": ["good"]}, "weight": 2},
            {"name": "keyword", "params": {"keywords": ["bad"]}},
            "repetition_penalty",
        ]
    )
    totals, components = reward.score(["", ""], ["good good good", "bad"])
    assert components == {
        "keyword": [1.0, 0.0],
        "keyword_2": [0.0, 1.0],
        "repetition_penalty": [-0.5, 0.0],
    }
    assert totals == [2 * 1.0 + 0.0 - 0.5, 0.0 + 1.0 + 0.0]


def test_extra_columns_reach_every_component():
    def matches(prompts, completions, reference, **kwargs):
        return [float(c == r) for c, r in zip(completions, reference, strict=True)]

    reward = build_reward([matches, {"name": matches, "weight": 10}])
    assert reward(prompts=["", ""], completions=["x", "y"], reference=["x", "z"]) == [11.0, 0.0]


def test_empty_batch_calls_no_plugin():
    def explode(prompts, completions, **kwargs):
        raise AssertionError("called on an empty batch")

    assert build_reward([explode, "vader"]).score([], []) == ([], {"explode": [], "vader": []})


def test_a_bad_component_is_named():
    def nan_reward(prompts, completions, **kwargs):
        return [float("nan")] * len(completions)

    with pytest.raises(RewardPluginError, match="'nan_reward' returned nan"):
        build_reward(["vader", nan_reward]).score(["p"], ["good"])


def test_a_built_composite_is_returned_as_is():
    reward = build_reward("vader")
    assert isinstance(reward, CompositeReward)
    assert build_reward(reward) is reward


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ([], ValueError, "empty list"),
        ({"weight": 2}, ValueError, "'name' required"),
        ({"name": "vader", "scale": 2}, ValueError, "has the keys"),
        ({"name": "vader", "weight": float("nan")}, ValueError, "finite number"),
        ({"name": "vader", "weight": "1"}, ValueError, "finite number"),
        ({"name": "length", "params": [3]}, ValueError, "must be a mapping"),
    ],
)
def test_bad_specs(spec, error, message):
    with pytest.raises(error, match=message):
        build_reward(spec)


def test_batch_lengths_must_agree():
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        build_reward("vader").score(["a", "b"], ["c"])

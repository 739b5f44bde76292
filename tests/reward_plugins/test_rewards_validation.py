"""Bad plugin output is a RewardPluginError naming the plugin; None counts as 0."""

from __future__ import annotations

import numpy as np
import pytest

from rewards import RewardPluginError, call_reward

PROMPTS, COMPLETIONS = ["p0", "p1", "p2"], ["c0", "c1", "c2"]


def returning(values):
    def plugin(prompts, completions, **kwargs):
        return values

    return plugin


def test_none_counts_as_zero_and_arrays_are_accepted():
    assert call_reward(returning([1, None, 0.5]), "ok", PROMPTS, COMPLETIONS) == [1.0, 0.0, 0.5]
    assert call_reward(returning(np.array([1, 2, 3], np.float32)), "np", PROMPTS, COMPLETIONS) == [
        1.0,
        2.0,
        3.0,
    ]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (
            [0.0, float("nan"), 1.0],
            r"'bad' returned nan, not a finite number at index 1 \(completion 'c1'\)",
        ),
        ([0.0, 1.0, float("inf")], r"'bad' returned inf, not a finite number at index 2"),
        ([float("-inf"), 0.0, 1.0], r"'bad' returned -inf, not a finite number at index 0"),
        (
            [0.0, "0.5", 1.0],
            r"'bad' returned a str \('0.5'\), not a real number or None at index 1",
        ),
        ([0.0, 1.0], r"'bad' returned 2 values for 3 completions"),
        (0.5, r"'bad' returned float 0.5; it must return a list"),
        ("0.5", r"'bad' returned str '0.5'; it must return a list"),
        (None, r"'bad' returned NoneType None; it must return a list"),
    ],
)
def test_bad_output_is_an_error_naming_the_plugin(output, message):
    with pytest.raises(RewardPluginError, match=message):
        call_reward(returning(output), "bad", PROMPTS, COMPLETIONS)


def test_an_exception_inside_the_plugin_is_chained():
    def broken(prompts, completions, **kwargs):
        raise KeyError("missing column")

    with pytest.raises(
        RewardPluginError, match="'broken' raised KeyError: 'missing column'"
    ) as info:
        call_reward(broken, "broken", PROMPTS, COMPLETIONS)
    assert isinstance(info.value.__cause__, KeyError)


def test_called_by_keyword_with_the_extra_columns():
    seen = {}

    def plugin(*, prompts, completions, **kwargs):
        seen.update(kwargs, prompts=prompts, completions=completions)
        return [0.0] * len(completions)

    call_reward(plugin, "kw", PROMPTS, COMPLETIONS, name=["a", "b", "c"])  # 'name' is a column
    assert seen == {"prompts": PROMPTS, "completions": COMPLETIONS, "name": ["a", "b", "c"]}

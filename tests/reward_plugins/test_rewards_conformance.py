"""The conformance check passes every built-in and says which requirement a bad plugin breaks."""

from __future__ import annotations

import random

import pytest

from rewards import RewardPluginError, build_reward, check_reward
from rewards.conformance import COMPLETIONS

BUILTIN_SPECS = [
    ("vader", {}),
    ("length", {"target": 5}),
    ("length", {"target": 20, "unit": "chars"}),
    ("keyword", {"keywords": ["film", "leaves"], "penalize": ["bad"]}),
    ("regex", {"pattern": r"\d"}),
    ("regex", {"pattern": r"\s*\d+", "fullmatch": True}),
    ("repetition_penalty", {}),
    ("overlong_penalty", {"max_tokens": 40, "cache_tokens": 20}),
]


@pytest.mark.parametrize(("name", "params"), BUILTIN_SPECS)
def test_builtins_conform(name, params):
    check_reward(name, **params)


def test_embedding_similarity_conforms(tiny_encoder):
    check_reward("embedding_similarity", model=tiny_encoder, reference="the film was good")
    references = ["the film", "", "good", "the cat sat", "4", "日本"]
    check_reward("embedding_similarity", model=tiny_encoder, columns={"reference": references})


def test_a_composite_conforms():
    check_reward(build_reward(["vader", {"name": "repetition_penalty", "weight": 0.5}]))


def nan_reward(prompts, completions, **kwargs):
    return [float("nan") if c == "" else 0.0 for c in completions]


def batch_normalized(prompts, completions, **kwargs):
    """Divides by the batch's total length: a batch scores differently from its samples alone."""
    total = sum(len(c) for c in completions) or 1
    return [len(c) / total for c in completions]


def no_kwargs(prompts, completions):
    return [0.0] * len(completions)


def uses_unknown_kwargs(prompts, completions, **kwargs):
    return [float(len(kwargs))] * len(completions)


def noisy(prompts, completions, **kwargs):
    return [random.random() for _ in completions]


def positional_names(p, c, **kwargs):
    return [0.0] * len(c)


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (nan_reward, r"'nan_reward' fails conformance requirement 'takes prompts=.*returned nan"),
        (batch_normalized, r"'batch_normalized' fails .*'batch-size independence.*at index 0"),
        # TRL's keyword arguments (completion_ids, trainer_state, ...) come with every call
        (no_kwargs, r"'no_kwargs' fails .*declare \*\*kwargs.*unexpected keyword argument"),
        (uses_unknown_kwargs, r"'uses_unknown_kwargs' fails .*'ignores unknown keyword arguments"),
        (noisy, r"'noisy' fails .*'(determinism|batch-size independence)"),
        (positional_names, r"'positional_names' fails .*'takes prompts=, completions="),
        (lambda prompts, completions, **kw: [0.0] * len(completions), r"'has a usable name'"),
    ],
)
def test_bad_plugins_fail_with_the_requirement(plugin, message):
    with pytest.raises(RewardPluginError, match=message):
        check_reward(plugin)


def test_nondeterminism_is_caught_even_when_batches_agree():
    calls = []

    def drifting(prompts, completions, **kwargs):
        calls.append(1)
        return [0.0 if len(calls) <= 1 + len(COMPLETIONS) + 1 else 1.0] * len(completions)

    with pytest.raises(RewardPluginError, match="'determinism"):
        check_reward(drifting)


def test_columns_must_cover_the_batch():
    with pytest.raises(ValueError, match="column 'reference' has 1 values"):
        check_reward("vader", columns={"reference": ["x"]})

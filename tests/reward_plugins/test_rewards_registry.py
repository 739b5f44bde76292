"""Selecting rewards: registered names, "module:attr", callables, classes with params, and
third-party plugins installed with real package metadata (entry-point group rlhf_env.rewards)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import rewards
from rewards import (
    RewardPluginError,
    UnknownRewardError,
    available_rewards,
    build_reward,
    get_reward,
    register_reward,
    registry,
)
from rewards.builtin.rules import Length
from rewards.builtin.sentiment import vader

BUILTINS = [
    "embedding_similarity",
    "guess_number",
    "instruction_content",
    "instruction_format",
    "instruction_length",
    "keyword",
    "length",
    "overlong_penalty",
    "regex",
    "repetition_penalty",
    "reward_model",
    "vader",
]

SHOUTY = '''
def shouty(prompts, completions, **kwargs):
    """Fraction of upper-case characters."""
    return [sum(ch.isupper() for ch in c) / max(1, len(c)) for c in completions]
'''


def constant_half(prompts, completions, **kwargs):
    return [0.5] * len(completions)


class Scaled:
    """A reward class outside the registry: ``scale`` times the completion's length."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def __call__(self, prompts, completions, **kwargs):
        return [self.scale * len(c) for c in completions]


def test_builtins_are_registered_by_name():
    assert sorted(registry._REGISTRY) == BUILTINS
    assert get_reward("vader") is vader
    assert isinstance(get_reward("length", target=3), Length)


def test_module_attr_string_and_callable():
    assert get_reward(f"{__name__}:constant_half") is constant_half
    assert get_reward(constant_half) is constant_half
    by_path = get_reward("rewards.builtin.rules:Length", target=2, unit="chars")
    assert by_path == Length(target=2, unit="chars")


def test_a_class_is_a_factory_called_with_the_params():
    scaled = get_reward(Scaled, scale=2.0)
    assert scaled(prompts=["", ""], completions=["ab", ""]) == [4.0, 0.0]
    assert get_reward(f"{__name__}:Scaled", scale=3.0).scale == 3.0


def test_params_for_a_function_are_an_error():
    with pytest.raises(RewardPluginError, match=r"'vader' is a function.*takes no params.*target"):
        get_reward("vader", target=3)


def test_bad_params_for_a_class_name_the_reward():
    with pytest.raises(RewardPluginError, match=r"'length'.*unexpected keyword argument 'size'"):
        get_reward("length", target=3, size=4)


def test_unknown_name_lists_what_exists():
    with pytest.raises(UnknownRewardError) as info:
        get_reward("vadr")
    message = str(info.value)
    assert "Did you mean 'vader'?" in message
    assert ", ".join(BUILTINS) in message
    assert "rlhf_env.rewards" in message


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("no_such_module_xyz:f", UnknownRewardError, "no module named 'no_such_module_xyz'"),
        ("rewards.builtin.rules:Nope", UnknownRewardError, "has no attribute 'Nope'"),
        (":f", UnknownRewardError, "must look like 'package.module:attr'"),
        ("rewards.builtin.embedding:DEFAULT_MODEL", RewardPluginError, "not callable"),
        (3, TypeError, "a reward spec is"),
    ],
)
def test_bad_specs(spec, error, message):
    with pytest.raises(error, match=message):
        get_reward(spec)


def test_registering_a_taken_name_names_both_objects(isolated_registry):
    def vader(prompts, completions, **kwargs):  # same name, different object
        return [0.0] * len(completions)

    with pytest.raises(RewardPluginError) as info:
        register_reward("vader")(vader)
    assert "rewards.builtin.sentiment:vader" in str(info.value)
    assert "test_registering_a_taken_name_names_both_objects.<locals>.vader" in str(info.value)


def test_user_registration(isolated_registry):
    register_reward("half")(constant_half)
    assert get_reward("half") is constant_half
    assert build_reward("half").components[0].name == "half"
    assert available_rewards()["half"] == f"registered {__name__}:constant_half"


def test_builtins_never_read_package_metadata(monkeypatch):
    def forbidden(**kwargs):
        raise AssertionError("entry points were scanned for a built-in or a path")

    monkeypatch.setattr(registry, "entry_points", forbidden)
    get_reward("vader")
    get_reward("rewards.builtin.sentiment:vader")


def test_entry_point_plugin_from_real_package_metadata(install_plugin):
    install_plugin("my-reward-pkg", "my_reward_pkg", SHOUTY, {"shouty": "my_reward_pkg:shouty"})
    shouty = get_reward("shouty")
    assert shouty(prompts=["", ""], completions=["AB", "ab"]) == [1.0, 0.0]
    totals, components = build_reward("shouty").score(["", ""], ["ABcd", ""])
    assert totals == [0.5, 0.0]
    assert components == {"shouty": [0.5, 0.0]}
    assert (
        available_rewards()["shouty"] == "entry point my_reward_pkg:shouty from my-reward-pkg 0.1"
    )


def test_entry_point_collision_names_the_distributions(install_plugin):
    install_plugin("shouty-a", "shouty_a", SHOUTY, {"shouty": "shouty_a:shouty"})
    install_plugin("shouty-b", "shouty_b", SHOUTY, {"shouty": "shouty_b:shouty"})
    with pytest.raises(RewardPluginError, match="declared by several") as info:
        get_reward("shouty")
    assert "shouty-a 0.1 (shouty_a:shouty)" in str(info.value)
    assert "shouty-b 0.1 (shouty_b:shouty)" in str(info.value)
    assert available_rewards()["shouty"].startswith("name collision")


def test_broken_entry_point_names_its_distribution(install_plugin):
    install_plugin(
        "broken-pkg", "broken_reward", "raise ImportError('no gpu')", {"oops": "broken_reward:f"}
    )
    with pytest.raises(RewardPluginError, match=r"'oops' from broken-pkg 0.1.*no gpu"):
        get_reward("oops")


def test_unknown_name_lists_installed_plugins(install_plugin):
    install_plugin("my-reward-pkg", "my_reward_pkg", SHOUTY, {"shouty": "my_reward_pkg:shouty"})
    with pytest.raises(UnknownRewardError, match=r"From installed packages .*: shouty\."):
        get_reward("nonexistent")


def test_importing_rewards_loads_no_heavy_library():
    root = Path(rewards.__file__).resolve().parents[1]
    heavy = "{'torch', 'transformers', 'vaderSentiment'}"
    code = f"import sys, rewards; print(sorted({heavy} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_registered_name_wins_over_an_entry_point(install_plugin):
    install_plugin("fake-vader", "fake_vader", SHOUTY, {"vader": "fake_vader:shouty"})
    assert get_reward("vader") is vader
    assert (
        "(hides entry point fake_vader:shouty from fake-vader 0.1)" in available_rewards()["vader"]
    )

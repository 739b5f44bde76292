"""Reward plugins: one TRL-compatible protocol, a registry, composition and a conformance check.

A reward is ``fn(prompts, completions, **kwargs) -> list[float | None]``, batched
(:class:`RewardFn`). Select one with :func:`get_reward` by registered name, ``"module:attr"``,
callable, or a name an installed package declares in the entry-point group
``rlhf_env.rewards``; combine several with :func:`build_reward` into a :class:`CompositeReward`
(a weighted sum that reports each component). Every plugin call is validated
(:func:`call_reward`): an exception or a NaN, infinite, missing or non-numeric value is a
:class:`RewardPluginError` naming the plugin. :func:`check_reward` is the conformance check for
plugin authors. :func:`available_rewards` lists what can be selected.

Built-ins (:mod:`rewards.builtin`): ``vader``, ``embedding_similarity``, ``length``, ``keyword``,
``regex``, ``repetition_penalty``, ``overlong_penalty``, ``reward_model`` (a reward model
trained with :mod:`rewards.reward_model`), and the instruction checks ``instruction_length``,
``instruction_content``, ``instruction_format``. Importing this package is cheap: torch and
transformers load only when a model-based reward is first called.
"""

from rewards import builtin  # noqa: F401  (registers the built-in rewards)
from rewards.compose import CompositeReward, build_reward
from rewards.conformance import check_reward
from rewards.errors import RewardPluginError, UnknownRewardError
from rewards.protocol import RewardFn
from rewards.registry import available_rewards, get_reward, register_reward
from rewards.validation import call_reward

__all__ = [
    "CompositeReward",
    "RewardFn",
    "RewardPluginError",
    "UnknownRewardError",
    "available_rewards",
    "build_reward",
    "call_reward",
    "check_reward",
    "get_reward",
    "register_reward",
]

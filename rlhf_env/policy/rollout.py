"""Run a policy on a vector environment: until enough episodes have finished, or once per
environment with groups of environments sharing a prompt."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from rlhf_env.envs.kl import kl_per_token
from rlhf_env.policy.sampler import LMSampler

EPISODE_KEYS = (
    "prompt",
    "completion",
    "score",
    "episode_kl",
    "response_length",
    "episode_return",
    "reward_components",
)


def collect_episodes(
    envs, sampler: LMSampler, num_episodes: int, *, seed: int | None = None, progress: bool = False
) -> list[dict]:
    """Step ``envs`` with ``sampler`` until ``num_episodes`` episodes end; return their final info.

    Each record holds the prompt, completion, score, summed KL, length, return and each reward
    component. Episodes are returned in the order they finished.
    """
    observation, _ = envs.reset(seed=seed)
    episodes: list[dict] = []
    with tqdm(total=num_episodes, desc="episodes", disable=not progress) as bar:
        while len(episodes) < num_episodes:
            observation, _, terminated, truncated, info = envs.step(sampler.act(observation))
            for row in np.flatnonzero(terminated | truncated):
                episodes.append({key: _pick(info[key], row) for key in EPISODE_KEYS})
                bar.update(1)
    return episodes[:num_episodes]


def group_reset_options(num_prompts: int, num_envs: int, group_size: int, seed: int | None):
    """Reset options giving each run of ``group_size`` environments one shared prompt, drawn
    uniformly from the ``num_prompts`` of the source with ``seed``."""
    if num_envs % group_size:
        raise ValueError(
            f"the number of environments ({num_envs}) must be a multiple of the group size "
            f"({group_size})"
        )
    picks = np.random.default_rng(seed).integers(num_prompts, size=num_envs // group_size)
    return {"prompt_indices": [int(i) for i in picks for _ in range(group_size)]}


def collect_groups(
    envs, sampler: LMSampler, group_size: int, *, seed: int | None = None
) -> list[tuple[str, list[str]]]:
    """One episode per environment, each run of ``group_size`` environments on one prompt;
    return ``(prompt, completions)`` per group (rows that end early idle until all end)."""
    options = group_reset_options(len(envs.unwrapped.prompts), envs.num_envs, group_size, seed)
    observation, _ = envs.reset(seed=seed, options=options)
    completions: list[str | None] = [None] * envs.num_envs
    prompts: list[str | None] = [None] * envs.num_envs
    while any(c is None for c in completions):
        observation, _, terminated, truncated, info = envs.step(sampler.act(observation))
        for row in np.flatnonzero(terminated | truncated):
            if completions[row] is None:
                prompts[row], completions[row] = info["prompt"][row], info["completion"][row]
    return [
        (str(prompts[start]), [str(c) for c in completions[start : start + group_size]])
        for start in range(0, envs.num_envs, group_size)
    ]


def _pick(values, row: int):
    if isinstance(values, dict):  # nested infos (reward components) are dicts of arrays
        return {
            name: _pick(column, row)
            for name, column in values.items()
            if not name.startswith("_") and values[f"_{name}"][row]
        }
    value = values[row]
    return value.item() if isinstance(value, np.generic) else value


def summarize(episodes: list[dict]) -> dict[str, float]:
    """Mean score, KL per token (docs/formulation.md eq. 6), mean length and the mean of each
    reward component (``reward/<name>``: a check's pass rate) of episode records."""
    lengths = [e["response_length"] for e in episodes]
    names = episodes[0]["reward_components"] if episodes else {}
    return {
        "score": float(np.mean([e["score"] for e in episodes])),
        "kl_per_token": kl_per_token([e["episode_kl"] for e in episodes], lengths),
        "response_length": sum(lengths) / max(len(episodes), 1),
        **{
            f"reward/{name}": float(np.mean([e["reward_components"][name] for e in episodes]))
            for name in names
        },
    }

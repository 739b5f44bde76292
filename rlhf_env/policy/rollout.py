"""Run a policy on a vector environment until enough episodes have finished."""

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

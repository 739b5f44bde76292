"""One RLlib training result -> one record of our metric names (:mod:`agents.core.metric_names`).

The env runners log sums over the iteration's episodes; the record turns them into exact means
over all runners: the mean score and length per episode, each reward component's mean, and the
KL per token of docs/formulation.md eq. 6.
"""

from __future__ import annotations

import math

from ray.rllib.core import DEFAULT_MODULE_ID

from agents.core import metric_names as M
from rlhf_env.envs.kl import kl_per_token


def iteration_record(result: dict) -> dict[str, float]:
    """Our metrics of an RLlib result dict (online or offline)."""
    learners = result.get("learners", {})
    learner = {
        **result,
        **learners,
        **learners.get("__all_modules__", {}),
        **learners.get(DEFAULT_MODULE_ID, {}),
    }
    # A metric restored from a checkpoint but not logged this iteration (a skipped update's
    # losses, an absent KL spike) reduces to NaN in RLlib's logger: it did not happen, so drop it.
    record = {
        key: float(value)
        for key, value in learner.items()
        if key.startswith(M.RECORD_PREFIXES)
        and not isinstance(value, dict)
        and not math.isnan(value)
    }
    record[M.ITERATION_S] = float(result["time_this_iter_s"])
    for measured in ("losses/entropy", "grpo/entropy"):  # on the learner's training tokens
        if measured in record:
            record[M.ENTROPY] = record[measured]
    runners = result.get("env_runners", {})
    if M.EPISODES not in runners:  # offline: no environment was stepped
        return record
    episodes, tokens = float(runners[M.EPISODES]), float(runners[M.TOKENS])
    record.update(
        {
            M.SCORE: float(runners[M.SCORE_SUM]) / episodes,
            M.KL: kl_per_token([float(runners[M.KL_SUM])], [tokens]),
            M.RESPONSE_LENGTH: tokens / episodes,
            M.TOKENS: tokens,
            M.EPISODES: episodes,
        }
    )
    record[M.KL_REF] = record[M.KL]
    for key, value in runners.items():
        if key.startswith(M.COMPONENT_SUM_PREFIX):
            record[M.REWARD_PREFIX + key[len(M.COMPONENT_SUM_PREFIX) :]] = float(value) / episodes
    timers = result["timers"]
    record[M.SAMPLE_TOKENS_PER_S] = tokens / max(timers["env_runner_sampling_timer"], 1e-9)
    if "learner_update_timer" in timers:  # absent when an iteration had nothing to learn from
        record[M.LEARN_TOKENS_PER_S] = tokens / max(timers["learner_update_timer"], 1e-9)
    return record

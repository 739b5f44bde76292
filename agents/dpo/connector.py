"""Online DPO's learner connector: groups of k sampled responses -> (best, worst) pairs.

The env runner samples k responses per prompt (``group_size``); the environment scored each one.
For every group the responses with the highest and the lowest score become a (chosen, rejected)
pair (docs/formulation.md eq. 26). A group whose scores tie carries no preference: its pair gets
weight 0, so every learner's batch keeps one pair per group (data-parallel learners must take
the same number of steps). The reference log-probs are the per-token ``log π_ref`` the
environment already computed (its info), so the frozen reference is never run a second time;
with the KL controller's β of the iteration they also give the KL term (eq. 27).

Why not rank by the return, score − β·Σ_t KL_t? It was tried: once the controller raised β to
hold the KL, the response closest to the reference won most groups, the pairs stopped saying
which response scores better, and the held-out score stalled (docs/experiments.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core import DEFAULT_MODULE_ID

from agents.core.columns import ENV_TOKENS, REF_LOGP
from agents.core.episode_rows import episode_prompt
from agents.core.training_step import episode_groups
from agents.dpo.rows import preference_rows


class PreferencePairConnector(ConnectorV2):
    """Builds DPO rows and reference log-probs from grouped, scored episodes."""

    def __call__(
        self, *, rl_module, batch, episodes, explore=None, shared_data=None, metrics=None, **kwargs
    ) -> dict[str, Any]:
        if any(np.asarray(e.get_extra_model_outputs(ENV_TOKENS)).any() for e in episodes):
            raise ValueError(
                "online DPO compares whole single-turn responses; this task is multi-turn (the "
                "environment inserts tokens between the agent's turns): train it with PPO or GRPO"
            )
        pairs = best_worst_pairs(episodes)
        chosen, rejected, weights = zip(*pairs)
        rows = preference_rows(
            [episode_prompt(e) for e in chosen],
            [np.asarray(e.get_actions()) for e in chosen],
            [np.asarray(e.get_actions()) for e in rejected],
            ref_chosen=[e.get_extra_model_outputs(REF_LOGP) for e in chosen],
            ref_rejected=[e.get_extra_model_outputs(REF_LOGP) for e in rejected],
            weights=weights,
            kl_coef=[e.custom_data["kl_coef"] for e in chosen],
        )
        if metrics is not None:
            margins = [c.custom_data["score"] - r.custom_data["score"] for c, r, _ in pairs]
            metrics.log_value("dpo/pairs", float(sum(weights)), reduce="sum")
            metrics.log_value("dpo/score_margin", float(np.mean(margins)), reduce="mean")
        return {DEFAULT_MODULE_ID: rows}


def best_worst_pairs(episodes) -> list[tuple[Any, Any, float]]:
    """(highest-, lowest-score episode, weight) of every group; weight 0 where the scores tie."""
    pairs = []
    for group in episode_groups(episodes):
        ranked = sorted(group, key=lambda e: e.custom_data["score"], reverse=True)
        best, worst = ranked[0], ranked[-1]
        pairs.append((best, worst, float(best.custom_data["score"] > worst.custom_data["score"])))
    return pairs

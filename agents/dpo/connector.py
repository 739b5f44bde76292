"""Learner connector for online DPO: groups of k sampled responses -> (best, worst) pairs.

The env runner samples k responses per prompt (``group_size``); the environment scored each one.
For every group, the responses with the highest and the lowest score become a (chosen, rejected)
pair, as SPEC.md section 2 ranks them; groups whose scores tie carry no preference and are
dropped. The reference log-probs of both responses are the per-token ``log π_ref`` the
environment already computed (its info), so the frozen reference is never run a second time:
their sums feed the DPO loss, and the per-token values, with the KL controller's β of the
iteration, the KL term that holds the policy near the reference (:mod:`agents.dpo.learner`).

Why not rank by the return, score − β·Σ_t KL_t? It was tried: once the controller raised β to
hold the KL, the response closest to the reference won most groups, the pairs stopped saying
which response scores better, and the held-out score stalled (README, "Online DPO").
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core import DEFAULT_MODULE_ID

from agents.dpo.rows import KL_COEF, REF_LOGPS, REF_TOKEN_LOGPS, preference_rows
from agents.env_runner import REF_LOGP
from agents.rows import ACTIONS, episode_prompt, pad_sequences


class PreferencePairConnector(ConnectorV2):
    """Builds DPO rows and reference log-probs from grouped, scored episodes."""

    def __init__(self, input_observation_space=None, input_action_space=None, *,
                 average_logprobs: bool = False, **kwargs):
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.average_logprobs = average_logprobs

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None,
                 metrics=None, **kwargs) -> dict[str, Any]:
        pairs = best_worst_pairs(episodes)
        if not pairs:
            raise ValueError("no preference pairs: every group's responses scored the same")
        chosen, rejected = zip(*pairs)
        rows = preference_rows([episode_prompt(e) for e in chosen],
                               [np.asarray(e.get_actions()) for e in chosen],
                               [np.asarray(e.get_actions()) for e in rejected])
        ref = [np.asarray(e.get_extra_model_outputs(REF_LOGP)) for e in (*chosen, *rejected)]
        rows[REF_LOGPS] = torch.tensor(
            [r.mean() if self.average_logprobs else r.sum() for r in ref], dtype=torch.float32)
        rows[REF_TOKEN_LOGPS] = pad_sequences(ref, rows[ACTIONS].shape[1], dtype=torch.float32)
        rows[KL_COEF] = torch.tensor([e.custom_data["kl_coef"] for e in (*chosen, *rejected)],
                                     dtype=torch.float32)
        if metrics is not None:
            margins = [c.custom_data["score"] - r.custom_data["score"] for c, r in pairs]
            metrics.log_value("dpo/pairs", len(pairs), reduce="mean")
            metrics.log_value("dpo/score_margin", float(np.mean(margins)), reduce="mean")
        return {DEFAULT_MODULE_ID: rows}


def best_worst_pairs(episodes) -> list[tuple[Any, Any]]:
    """(highest-, lowest-score) episode of every group whose scores are not all equal."""
    groups = defaultdict(list)
    for episode in episodes:
        groups[episode.custom_data["group"]].append(episode)
    pairs = []
    for members in groups.values():
        ranked = sorted(members, key=lambda e: e.custom_data["score"], reverse=True)
        if len(ranked) >= 2 and ranked[0].custom_data["score"] > ranked[-1].custom_data["score"]:
            pairs.append((ranked[0], ranked[-1]))
    return pairs


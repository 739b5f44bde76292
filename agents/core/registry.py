"""The algorithms the training driver can run, by name: string entry points, loaded on use.

Each entry names an :class:`agents.core.algorithm.LLMAlgorithm` instance in its algorithm's
folder. Adding an algorithm is that folder plus one line here; the driver never names one.
"""

from __future__ import annotations

import importlib

ALGORITHMS = {
    "ppo": "agents.ppo.algorithm:PPO",
    "dpo_online": "agents.dpo.online:ONLINE_DPO",
    "dpo_offline": "agents.dpo.offline:OFFLINE_DPO",
    "grpo": "agents.grpo.algorithm:GRPO_FAMILY",
}


def get_algorithm(name: str):
    """The registered algorithm ``name`` (an ``LLMAlgorithm``); a clear error for unknown names."""
    try:
        module_name, _, attr = ALGORITHMS[name].partition(":")
    except KeyError:
        raise ValueError(
            f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}"
        ) from None
    return getattr(importlib.import_module(module_name), attr)

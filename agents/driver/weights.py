"""The policy being trained, as a ``transformers`` model in the driver process.

Online algorithms keep a copy in the driver's local env runner, synced after every update;
without one (offline DPO) the weights are fetched from the learner group, local or remote, into
a driver-side copy of the model.
"""

from __future__ import annotations

import functools

import torch
from ray.rllib.core import DEFAULT_MODULE_ID

POLICY_PREFIX = "policy."  # the LM's parameters inside the RLModule's state


def current_policy(algo, model_spec: str) -> torch.nn.Module:
    """The current policy LM of a built RLlib algorithm."""
    if algo.env_runner is not None:
        return algo.get_module().policy
    state = algo.learner_group.get_weights([DEFAULT_MODULE_ID])[DEFAULT_MODULE_ID]
    policy = _driver_copy(model_spec)
    policy.load_state_dict(
        {
            key[len(POLICY_PREFIX) :]: torch.as_tensor(value)
            for key, value in state.items()
            if key.startswith(POLICY_PREFIX)
        }
    )
    return policy


@functools.cache
def _driver_copy(model_spec: str) -> torch.nn.Module:
    from rlhf_env.data.models import load_causal_lm

    return load_causal_lm(model_spec)

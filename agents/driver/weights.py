"""The policy being trained, as a ``transformers`` model (PEFT with LoRA) in the driver process.

Online algorithms keep a copy in the driver's local env runner, synced after every update;
without one (offline DPO) the weights are fetched from the learner group, local or remote, into
a driver-side copy of the module built from the same spec (so LoRA adapters load onto their
base, exactly as on an env runner).
"""

from __future__ import annotations

import torch
from ray.rllib.core import DEFAULT_MODULE_ID

from agents.core.module import CausalLMModule


def current_policy(algo) -> torch.nn.Module:
    """The current policy LM of a built RLlib algorithm."""
    if algo.env_runner is not None:
        return algo.get_module().policy
    if getattr(algo, "driver_module", None) is None:
        spec = algo.config.get_rl_module_spec()
        algo.driver_module = CausalLMModule(
            observation_space=spec.observation_space,
            action_space=spec.action_space,
            inference_only=True,
            model_config=spec.model_config,
        )
    state = algo.learner_group.get_weights([DEFAULT_MODULE_ID])[DEFAULT_MODULE_ID]
    algo.driver_module.set_state(state)
    return algo.driver_module.policy

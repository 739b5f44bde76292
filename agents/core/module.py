"""The RLlib module of an LLM policy: a ``transformers`` causal LM plus a value head (PPO critic).

Training batches are whole sequences, one row each (:mod:`agents.core.columns`): the prompt
left-padded to a common width P, then the response right-padded to T tokens. One forward of the
backbone over the row gives, at positions P-1 .. P+T-2, the hidden state of every state s_t; the
LM head on those gives log π(a_t|s_t), the value head V(s_t) (TRL's original value head on the
policy's trunk). Nothing is evaluated one token-prefix at a time.

The critic is a linear head on the policy's backbone by default; ``critic: separate`` gives it
its own copy of the backbone (no gradient interference, twice the memory); ``critic: none``
(DPO) has no critic. Env runners build the
module with ``inference_only=True``: the policy alone, and only the policy's weights are synced.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.models.torch.torch_distributions import TorchCategorical
from ray.rllib.utils.torch_utils import convert_to_torch_tensor

from agents.core.assets import receive_assets_from_driver
from agents.core.columns import ATTENTION_MASK, INPUT_IDS, PROMPT_WIDTH, VALUES
from agents.core.lora import base_of, is_lora, with_lora
from rlhf_env.data.models import load_causal_lm
from rlhf_env.data.ops import position_ids, response_states


class CausalLMModule(TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI):
    """``model_config``: ``model`` (spec for ``rlhf_env.data.models.load_causal_lm``), ``critic``
    (``"shared"``, ``"separate"`` or ``"none"``), ``precision`` (``fp32``, or ``bf16``: the
    learner's forward in bf16 autocast, log-softmax and losses in float32; an env runner's copy
    in bf16 weights), ``lora`` (:class:`agents.core.lora.LoRAConfig` as a dict; ``r`` 0: none)
    and ``gradient_checkpointing`` (the learner recomputes activations in the backward)."""

    def setup(self) -> None:
        receive_assets_from_driver()  # this node may lack the model
        self.policy = load_causal_lm(self.model_config["model"])
        lora = self.model_config.get("lora") or {"r": 0}
        if lora["r"]:
            self.policy = with_lora(self.policy, lora)
        self.bf16 = self.model_config.get("precision", "fp32") == "bf16"
        if self.inference_only and self.bf16:  # the sampler's copy: bf16 weights
            self.policy.to(torch.bfloat16)
        if not self.inference_only and self.model_config.get("gradient_checkpointing"):
            self.policy.gradient_checkpointing_enable()
            if lora["r"]:
                self.policy.enable_input_require_grads()  # frozen embeddings, checkpointed trunk
        self.policy.train()  # dropout is off (load_causal_lm), so train mode == eval mode
        self.action_dist_cls = TorchCategorical
        self.critic_kind = self.model_config.get("critic", "shared")
        if self.critic_kind not in ("shared", "separate", "none"):
            raise ValueError(f"critic must be shared, separate or none, got {self.critic_kind!r}")
        if self.inference_only or self.critic_kind == "none":
            return
        if self.critic_kind == "separate":
            self.critic_backbone = load_causal_lm(self.model_config["model"]).base_model
        hidden = self.policy.config.get_text_config().hidden_size
        self.value_head = torch.nn.Linear(hidden, 1)
        # Start from V = 0, a constant baseline: a randomly initialised head on a large LM's
        # hidden states predicts noise (explained variance of -10 on SmolLM2), and its errors
        # would swamp the advantages until it learned; from zero it can only improve on them.
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)

    @property
    def trained(self) -> set[str]:
        """What an update changes: the adapters (and critic) with LoRA, else every weight; the
        state that travels to env runners and into checkpoints is exactly that."""
        return {name for name, p in self.named_parameters() if p.requires_grad}

    @property
    def lm(self) -> torch.nn.Module:
        """The ``transformers`` causal LM (under the adapters, which live inside its layers)."""
        return base_of(self.policy)

    def get_state(self, *args, **kwargs):
        """RLlib's state, restricted to what an update changes when the base is frozen: only
        the adapters travel to env runners and into checkpoints."""
        state = super().get_state(*args, **kwargs)
        if not is_lora(self.policy):
            return state
        return {key: value for key, value in state.items() if key in self.trained}

    def set_state(self, state) -> None:
        """Load a (possibly adapters-only) state; every adapter this module has must arrive."""
        if not is_lora(self.policy):
            return super().set_state(state)
        missing, _ = self.load_state_dict(convert_to_torch_tensor(state), strict=False)
        absent = sorted(set(missing) & self.trained)
        if absent:
            raise ValueError(
                f"a weight sync left {len(absent)} adapters out (e.g. {absent[0]}): "
                "the sampler would not serve the trained policy"
            )

    def get_non_inference_attributes(self) -> list[str]:
        return {
            "shared": ["value_head"],
            "separate": ["value_head", "critic_backbone"],
            "none": [],
        }[self.critic_kind]

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """Next-token logits after each observation (stock RLlib env runners use this path)."""
        obs = batch[Columns.OBS]
        mask = obs[ATTENTION_MASK]
        out = self.policy(
            input_ids=obs[INPUT_IDS], attention_mask=mask, position_ids=position_ids(mask)
        )
        last = mask.sum(-1) - 1
        return {Columns.ACTION_DIST_INPUTS: out.logits[torch.arange(len(last)), last]}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """Logits [N, T, V] and values [N, T] of every response token, one forward per row."""
        with self._autocast():
            states = self._response_states(self.lm.base_model, batch)
            out = {Columns.ACTION_DIST_INPUTS: self.lm.get_output_embeddings()(states)}
            if self.critic_kind == "none":
                return out
            if self.critic_kind == "separate":
                states = self._response_states(self.critic_backbone, batch)
            out[VALUES] = self.value_head(states).squeeze(-1).float()
        return out

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """V(s_t) for every response position of each row, [N, T] (no gradient needed here)."""
        backbone = self.lm.base_model if self.critic_kind == "shared" else self.critic_backbone
        with self._autocast():
            return self.value_head(self._response_states(backbone, batch)).squeeze(-1).float()

    def _autocast(self):
        """bf16 autocast of the learner's forward (``precision: bf16``); a no-op in fp32."""
        device = next(self.parameters()).device.type
        return torch.autocast(device, dtype=torch.bfloat16, enabled=self.bf16)

    @staticmethod
    def _response_states(backbone: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """Hidden states [N, T, H] at the positions that predict response tokens a_0..a_{T-1}."""
        return response_states(
            backbone, batch[INPUT_IDS], batch[ATTENTION_MASK], int(batch[PROMPT_WIDTH][0])
        )

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

from agents.core.assets import receive_assets_from_driver
from agents.core.columns import ATTENTION_MASK, INPUT_IDS, PROMPT_WIDTH, VALUES
from rlhf_env.data.models import load_causal_lm
from rlhf_env.data.ops import position_ids, response_states


class CausalLMModule(TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI):
    """``model_config``: ``model`` (spec for ``rlhf_env.data.models.load_causal_lm``), ``critic``
    (``"shared"``, ``"separate"`` or ``"none"``)."""

    def setup(self) -> None:
        receive_assets_from_driver()  # this node may lack the model
        self.policy = load_causal_lm(self.model_config["model"])
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
        states = self._response_states(self.policy.base_model, batch)
        out = {Columns.ACTION_DIST_INPUTS: self.policy.get_output_embeddings()(states)}
        if self.critic_kind == "none":
            return out
        if self.critic_kind == "separate":
            states = self._response_states(self.critic_backbone, batch)
        out[VALUES] = self.value_head(states).squeeze(-1)
        return out

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """V(s_t) for every response position of each row, [N, T] (no gradient needed here)."""
        backbone = self.policy.base_model if self.critic_kind == "shared" else self.critic_backbone
        return self.value_head(self._response_states(backbone, batch)).squeeze(-1)

    @staticmethod
    def _response_states(backbone: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """Hidden states [N, T, H] at the positions that predict response tokens a_0..a_{T-1}."""
        return response_states(
            backbone, batch[INPUT_IDS], batch[ATTENTION_MASK], int(batch[PROMPT_WIDTH][0])
        )

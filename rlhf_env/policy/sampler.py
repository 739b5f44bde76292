"""A KV-cached, batched policy for the environment: samples tokens and supplies their log-probs.

It is the agent side of a rollout: one single-token forward of the policy per step for all
environments. It keeps one cache row per environment and follows the observations: a row whose
observation is its cached tokens plus new ones (the last action, and in a multi-turn episode the
tokens the environment appended after it) is extended by them, in one forward for all rows;
any other row (a new episode after reset or autoreset) is re-encoded from its observation. Only
the sampled token and its log-prob leave the sampler, never the vocabulary-sized logits.

Sampling is from ``softmax(logits / temperature)`` and the returned log-prob is of that same
distribution, so it is exactly ``π_old`` of docs/formulation.md eq. 1 (no top-k/top-p, which
would make the log-prob of the policy and of the sampler differ).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedModel

from rlhf_env.data.kv_cache import BatchedKVModel
from rlhf_env.envs.actions import TokenAction


class LMSampler:
    """Sample the next token for ``num_envs`` environments from a causal LM policy."""

    def __init__(
        self,
        model: PreTrainedModel,
        num_envs: int,
        *,
        temperature: float = 1.0,
        seed: int | None = None,
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.kv = BatchedKVModel(model, num_envs)
        self.num_envs = num_envs
        self.temperature = temperature
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else torch.seed())
        self._cached: list[np.ndarray | None] = [None] * num_envs

    @torch.inference_mode()
    def act(self, observation: dict[str, np.ndarray]) -> list[TokenAction] | TokenAction:
        """Tokens (with log-probs) for a batched observation, or one for a single env's."""
        single = observation["input_ids"].ndim == 1
        ids = np.atleast_2d(observation["input_ids"])
        lengths = np.atleast_2d(observation["attention_mask"]).sum(axis=1)
        self._follow([ids[row, : lengths[row]] for row in range(len(ids))])
        logprobs = torch.log_softmax(self.kv.next_logits / self.temperature, dim=-1).cpu()
        tokens = torch.multinomial(logprobs.exp(), 1, generator=self.generator).squeeze(1)
        picked = logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1)
        actions = TokenAction.batch(tokens.tolist(), picked.tolist())
        return actions[0] if single else actions

    def _follow(self, streams: list[np.ndarray]) -> None:
        """Bring every cache row up to date with the observed token streams."""
        runs: list[list[int]] = [[] for _ in streams]
        restart = []
        for row, stream in enumerate(streams):
            cached = self._cached[row]
            if (
                cached is not None
                and len(stream) >= len(cached)
                and np.array_equal(stream[: len(cached)], cached)
            ):
                runs[row] = stream[len(cached) :].tolist()
            else:
                restart.append(row)
            self._cached[row] = stream.copy()
        self.kv.extend([[] if row in restart else run for row, run in enumerate(runs)])
        self.kv.reset_rows(restart, [streams[row].tolist() for row in restart])

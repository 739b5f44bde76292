"""The batched form of :class:`~rlhf_env.envs.env.TextGenEnv`: ``num_envs`` episodes per step.

One reference forward per step for all episodes (KV-cached, batched), reward plugins called once
per step with every episode that ended at it. Autoreset is Gymnasium's ``NEXT_STEP`` mode: an
episode that ended is restarted with a new prompt by the following ``step`` call, whose action
for that row is ignored. Pass sampling log-probs as a list of :class:`~rlhf_env.TokenAction`
(``TokenAction.batch(tokens, logprobs)``); a plain integer array gets the plain-agent behaviour
documented on the single environment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlhf_env.envs.env import TextGenEnv, observation_space, pick_prompt
from rlhf_env.envs.task import TaskSpec


class TextGenVectorEnv(VectorEnv):
    """``num_envs`` copies of a task stepped in one batch; see :class:`TextGenEnv` for the MDP."""

    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 8, render_mode: str | None = None, **task: Any):
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.spec_args = TaskSpec(**task)
        self.batch, self.prompts = self.spec_args.build(num_rows=num_envs)
        self.single_action_space = spaces.Discrete(self.batch.vocab_size)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space = observation_space(
            self.batch.vocab_size, self.batch.input_ids.shape[1]
        )
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._autoreset = np.zeros(num_envs, bool)

    kl_coef = TextGenEnv.kl_coef
    global_step = TextGenEnv.global_step

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start all episodes. ``options={"prompts": [...]}`` forces one prompt (a text or a
        conversation) per env, ``options={"prompt_indices": [...]}`` one prompt of the source
        (with its columns)."""
        super().reset(seed=seed)
        per_env = _per_env_options(options or {}, self.num_envs)
        self._start(list(range(self.num_envs)), per_env)
        self._autoreset[:] = False
        return self.batch.observation(), {}

    def step(self, actions):
        if len(actions) != self.num_envs:
            raise ValueError(f"got {len(actions)} actions for {self.num_envs} envs")
        restarting = self._autoreset.copy()
        result = self.batch.step(list(actions), active=~restarting)
        if restarting.any():
            self._start([int(row) for row in np.flatnonzero(restarting)])
        infos = {
            "ref_logprob": result.ref_logprob,
            "logprob": result.logprob,
            "logprob_supplied": result.logprob_supplied,
            "kl": result.kl,
            "env_tokens": result.env_tokens,
        }
        infos.update({f"_{key}": ~restarting for key in list(infos)})
        for row in result.finished:
            infos = self._add_info(infos, self.batch.final_info(row), row)
        self._autoreset = result.terminated | result.truncated
        return (
            self.batch.observation(),
            result.rewards,
            result.terminated,
            result.truncated,
            infos,
        )

    def _start(self, rows: list[int], options: list[dict] | None = None) -> None:
        options = options or [{}] * len(rows)
        picked = [pick_prompt(self.prompts, self.np_random, option) for option in options]
        self.batch.start(rows, [text for text, _ in picked], [extras for _, extras in picked])

    def render(self) -> tuple[str, ...] | None:
        if self.render_mode == "ansi":
            return tuple(self.batch.render(row) for row in range(self.num_envs))
        return None


def _per_env_options(options: dict, num_envs: int) -> list[dict] | None:
    """Single-env reset options for each env from ``prompts``/``prompt_indices`` options."""
    for key, single in (("prompts", "prompt"), ("prompt_indices", "prompt_index")):
        values = options.get(key)
        if values is not None:
            if len(values) != num_envs:
                raise ValueError(f"options[{key!r}] has {len(values)} entries for {num_envs} envs")
            return [{single: value} for value in values]
    return None

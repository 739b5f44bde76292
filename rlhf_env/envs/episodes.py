"""The stepping logic shared by the single and the vector environment: B episodes in lockstep.

Each row holds one episode: a prompt, the response so far, and per token the sampling log-prob,
the reference log-prob, the KL estimate and the reward of docs/formulation.md eqs. 1-2. The
reference model is evaluated incrementally for all rows at once
(:class:`~rlhf_env.data.kv_cache.BatchedKVModel`), and the reward plugins are called once per
step with every episode that ended at that step, with the keyword arguments TRL's GRPOTrainer
passes (:mod:`rewards.protocol`). A prompt is a text or a conversation; conversations (and, with
``chat_template``, texts) are encoded through the tokenizer's chat template
(:mod:`rlhf_env.data.chat`). With :class:`~rlhf_env.envs.turns.Turns`, episodes are
multi-turn: a turn's end hands over to the partner, whose reply tokens are appended to the
response stream (and to the reference's cache) without being actions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from rewards.protocol import TrainerState
from rlhf_env.data.chat import check_prompt, completion_as, prompt_ids
from rlhf_env.data.kv_cache import BatchedKVModel
from rlhf_env.envs.actions import validate_action
from rlhf_env.envs.kl import KL_ESTIMATORS, kl_estimate, token_reward
from rlhf_env.envs.turns import Turns


@dataclass
class Episode:
    """One prompt (text or conversation) and its response so far, with the per-token terms of
    the reward."""

    prompt: str | list[dict]
    prompt_ids: list[int]
    extras: dict = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)  # the agent's tokens (the actions)
    stream: list[int] = field(default_factory=list)  # the response: agent and environment tokens
    agent_mask: list[bool] = field(default_factory=list)  # True where ``stream`` has an action
    turn_start: int = 0  # index in ``tokens`` where the agent's current turn began
    logprobs: list[float] = field(default_factory=list)
    ref_logprobs: list[float] = field(default_factory=list)
    kls: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    score: float | None = None
    components: dict[str, float] = field(default_factory=dict)
    completion: str = ""
    reward_log: dict = field(default_factory=dict)


@dataclass
class StepResult:
    """What one batched step produced, one entry per row (rows that did not step hold 0/False)."""

    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    ref_logprob: np.ndarray
    logprob: np.ndarray
    logprob_supplied: np.ndarray
    kl: np.ndarray
    env_tokens: np.ndarray  # how many environment tokens followed the row's action
    finished: list[int]


class EpisodeBatch:
    """``num_rows`` episodes stepped together against one frozen reference model."""

    def __init__(
        self,
        *,
        num_rows: int,
        reference,
        tokenizer,
        reward,
        vocab_size: int,
        max_prompt_tokens: int,
        max_new_tokens: int,
        kl_coef: float,
        kl_estimator: str,
        chat_template: bool = False,
        turns: Turns | None = None,
    ):
        if kl_estimator not in KL_ESTIMATORS:
            raise ValueError(
                f"unknown kl_estimator {kl_estimator!r}; choose one of {KL_ESTIMATORS}"
            )
        if max_new_tokens < 1 or max_prompt_tokens < 1:
            raise ValueError("max_new_tokens and max_prompt_tokens must be at least 1")
        self.num_rows = num_rows
        # No reference (β = 0 for good): the KL term is 0 and a step runs no reference forward.
        self.reference = BatchedKVModel(reference, num_rows) if reference is not None else None
        self.tokenizer = tokenizer
        self.reward = reward
        self.vocab_size = vocab_size
        self.max_prompt_tokens = max_prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.kl_coef = kl_coef
        self.kl_estimator = kl_estimator
        self.chat_template = chat_template
        self.trainer_state = TrainerState()
        self.turns = turns
        self.eos_ids = _eos_ids(tokenizer, reference)
        self.pad_id = tokenizer.pad_token_id or 0
        width = max_prompt_tokens + max_new_tokens
        self.input_ids = np.full((num_rows, width), self.pad_id, dtype=np.int64)
        self.attention_mask = np.zeros((num_rows, width), dtype=np.int64)
        self.episodes: list[Episode | None] = [None] * num_rows

    def set_reference(self, model) -> None:
        """Use ``model`` as the frozen reference for the episodes started from now on (an agent
        hands its own base weights with the LoRA adapters off, before sampling)."""
        self.reference = BatchedKVModel(model, self.num_rows)

    @property
    def kl_coef(self) -> float:
        """β of the KL penalty (docs/formulation.md eq. 2): finite and >= 0."""
        return self._kl_coef

    @kl_coef.setter
    def kl_coef(self, value: float) -> None:
        value = float(value)
        if value and getattr(self, "reference", True) is None:
            raise ValueError(
                f"kl_coef (β) is {value}, but the environment has no reference "
                "model (reference=False): β must be 0"
            )
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(
                f"kl_coef (β) must be a finite number >= 0, got {value}: a NaN or "
                "negative β would poison or invert every reward"
            )
        self._kl_coef = value

    def encode_prompt(self, prompt: str | list[dict]) -> list[int]:
        """Token ids of a prompt (chat-templated when the task says so); empty and over-long
        prompts are errors, never truncated: the length counted is the templated one."""
        prompt = check_prompt(prompt)
        ids = prompt_ids(self.tokenizer, prompt, self.chat_template)
        if not ids:
            raise ValueError(f"prompt {prompt!r} encodes to no tokens")
        if len(ids) > self.max_prompt_tokens:
            templated = " (with the chat template)" if self.chat_template else ""
            raise ValueError(
                f"prompt has {len(ids)} tokens{templated}, more than max_prompt_tokens="
                f"{self.max_prompt_tokens}: {str(prompt)[:80]!r}..."
            )
        return ids

    def start(self, rows: list[int], prompts: list, extras: list[dict]) -> None:
        """Begin new episodes in ``rows``; one batched reference forward for all their prompts."""
        ids = [self.encode_prompt(prompt) for prompt in prompts]
        if self.reference is not None:
            self.reference.reset_rows(rows, ids)
        for row, prompt, encoded, extra in zip(rows, prompts, ids, extras):
            self.episodes[row] = Episode(check_prompt(prompt), encoded, dict(extra))
            if self.turns is not None:
                self.turns.start(self.episodes[row].extras)
            self.input_ids[row] = self.pad_id
            self.attention_mask[row] = 0
            self.input_ids[row, : len(encoded)] = encoded
            self.attention_mask[row, : len(encoded)] = 1

    def step(self, actions, active: np.ndarray) -> StepResult:
        """Advance the ``active`` rows by one token each (docs/formulation.md eq. 2 per token)."""
        n = self.num_rows
        result = StepResult(
            rewards=np.zeros(n, np.float32),
            terminated=np.zeros(n, bool),
            truncated=np.zeros(n, bool),
            ref_logprob=np.zeros(n, np.float32),
            logprob=np.zeros(n, np.float32),
            logprob_supplied=np.zeros(n, bool),
            kl=np.zeros(n, np.float32),
            env_tokens=np.zeros(n, np.int64),
            finished=[],
        )
        checked = [validate_action(a, self.vocab_size) for a in actions]
        runs: list[list[int]] = [[] for _ in range(n)]  # what each row feeds the reference
        tokens = torch.tensor([token for token, _ in checked])
        ref_logprobs = (
            self.reference.log_probs(tokens).tolist() if self.reference is not None else [None] * n
        )
        for row in np.flatnonzero(active):
            token, logprob = checked[row]
            supplied = logprob is not None
            # Without a reference, π_ref is taken as π_old: the KL term is 0.
            ref_logprob = ref_logprobs[row] if self.reference is not None else (logprob or 0.0)
            # No sampling log-prob supplied: treat π_old as π_ref for this token (KL term 0).
            logprob = logprob if supplied else ref_logprob
            kl = kl_estimate(logprob, ref_logprob, self.kl_estimator)
            reward = token_reward(kl, self.kl_coef)
            episode = self.episodes[row]
            episode.tokens.append(token)
            episode.logprobs.append(logprob)
            episode.ref_logprobs.append(ref_logprob)
            episode.kls.append(kl)
            episode.rewards.append(reward)
            inserted, result.terminated[row], result.truncated[row] = self._advance(episode, token)
            start = len(episode.prompt_ids) + len(episode.stream)
            episode.stream += [token, *inserted]
            episode.agent_mask += [True] + [False] * len(inserted)
            self.input_ids[row, start : start + 1 + len(inserted)] = [token, *inserted]
            self.attention_mask[row, start : start + 1 + len(inserted)] = 1
            runs[row] = [token, *inserted]
            result.env_tokens[row] = len(inserted)
            result.rewards[row] = reward
            result.ref_logprob[row] = ref_logprob
            result.logprob[row] = logprob
            result.logprob_supplied[row] = supplied
            result.kl[row] = kl
        ended = result.terminated | result.truncated
        continuing = active & ~ended
        if continuing.any() and self.reference is not None:
            self.reference.extend([run if continuing[row] else [] for row, run in enumerate(runs)])
        result.finished = [int(row) for row in np.flatnonzero(active & ended)]
        self._score(result)
        return result

    @property
    def stop_ids(self) -> set[int]:
        """Tokens after which the agent stops generating: EOS, and the task's turn ends."""
        return self.eos_ids | (self.turns.end_ids if self.turns is not None else set())

    def _advance(self, episode: Episode, token: int) -> tuple[list[int], bool, bool]:
        """After the agent's ``token``: (environment tokens to append, terminated, truncated).

        Single-turn, EOS terminates. Multi-turn, an end-of-turn token hands over to the
        partner, which ends the episode or replies. Either way the episode is truncated when
        the response stream (with the reply) leaves the agent no room for another token."""
        inserted: list[int] = []
        if self.turns is None:
            terminated = token in self.eos_ids
        elif token in self.stop_ids:
            turn = episode.tokens[episode.turn_start :]
            episode.turn_start = len(episode.tokens)
            inserted, terminated = self.turns.end_turn(turn, episode.extras)
        else:
            terminated = False
        truncated = not terminated and (
            len(episode.stream) + 1 + len(inserted) >= self.max_new_tokens
        )
        return ([] if truncated else inserted), terminated, truncated

    def _score(self, result: StepResult) -> None:
        """Score every episode that ended this step in one reward call; add it to its last token.

        The reward gets TRL's keyword arguments (:mod:`rewards.protocol`); what it records with
        ``log_extra``/``log_metric`` lands in each episode's ``reward_log``.
        """
        if not result.finished:
            return
        episodes = [self.episodes[row] for row in result.finished]
        for episode in episodes:
            episode.completion = self.tokenizer.decode(episode.stream, skip_special_tokens=True)
            episode.reward_log = {}
        shared = set.intersection(*(set(e.extras) for e in episodes))
        columns = {name: [e.extras[name] for e in episodes] for name in sorted(shared)}

        def log_extra(column: str, values: list) -> None:
            for episode, value in zip(episodes, values, strict=True):
                episode.reward_log[column] = value

        def log_metric(name: str, value: float) -> None:
            for episode in episodes:
                episode.reward_log[name] = float(value)

        completion_ids = [list(e.tokens) for e in episodes]
        totals, components = self.reward.score(
            [e.prompt for e in episodes],
            [completion_as(e.prompt, e.completion) for e in episodes],
            completion_ids=completion_ids,
            completions_ids=completion_ids,  # the name in TRL's reward documentation
            trainer_state=self.trainer_state,
            log_extra=log_extra,
            log_metric=log_metric,
            **columns,
        )
        for i, (row, episode) in enumerate(zip(result.finished, episodes)):
            episode.score = float(totals[i])
            episode.components = {name: float(values[i]) for name, values in components.items()}
            episode.rewards[-1] = token_reward(episode.kls[-1], self.kl_coef, episode.score)
            result.rewards[row] = episode.rewards[-1]

    def observation(self, row: int | None = None) -> dict[str, np.ndarray]:
        """``input_ids`` and ``attention_mask`` of one row, or of all rows stacked."""
        index = slice(None) if row is None else row
        return {
            "input_ids": self.input_ids[index].copy(),
            "attention_mask": self.attention_mask[index].copy(),
        }

    def final_info(self, row: int) -> dict:
        """The end-of-episode info of a finished row."""
        episode = self.episodes[row]
        return {
            "score": episode.score,
            "reward_components": dict(episode.components),
            "episode_kl": float(sum(episode.kls)),
            "episode_return": float(sum(episode.rewards)),
            "response_length": len(episode.tokens),
            "agent_mask": self.agent_mask(row),
            "prompt": episode.prompt,
            "completion": episode.completion,
            "reward_log": dict(episode.reward_log),
            "agent_completion": (
                episode.completion  # single-turn: the stream is the agent's tokens alone
                if len(episode.stream) == len(episode.tokens)
                else self.tokenizer.decode(episode.tokens, skip_special_tokens=True)
            ),
        }

    def agent_mask(self, row: int) -> np.ndarray:
        """[max_new_tokens] bool: True at the agent's tokens of the row's response stream (the
        observation's columns after the prompt), False at a multi-turn environment's tokens and
        after the stream's end; one shape for every episode, as vector infos need."""
        episode = self.episodes[row]
        mask = np.zeros(self.max_new_tokens, bool)
        mask[: len(episode.agent_mask)] = episode.agent_mask
        return mask

    def render(self, row: int) -> str:
        """Prompt, response tokens with their reward and KL (the environment's multi-turn
        tokens marked ``env``), and the score (``ansi`` mode)."""
        episode = self.episodes[row]
        if episode is None:
            return ""
        lines = [f"prompt: {episode.prompt}"]
        terms = iter(zip(episode.rewards, episode.kls))
        for token, by_agent in zip(episode.stream, episode.agent_mask):
            piece = f"{self.tokenizer.decode([token])!r:>20}"
            if by_agent:
                reward, kl = next(terms)
                lines.append(f"  {piece}  reward {reward:+.4f}  kl {kl:+.4f}")
            else:
                lines.append(f"  {piece}  env")
        if episode.score is not None:
            lines.append(
                f"score: {episode.score:+.4f}  components: {episode.components}  "
                f"return: {sum(episode.rewards):+.4f}"
            )
        return "\n".join(lines) + "\n"


def _eos_ids(tokenizer, model) -> set[int]:
    """End-of-sequence ids from the tokenizer and the model's generation config."""
    ids = {tokenizer.eos_token_id}
    generation = getattr(model, "generation_config", None)
    eos = getattr(generation, "eos_token_id", None)
    ids.update(eos if isinstance(eos, list) else [eos])
    return {int(i) for i in ids if i is not None}

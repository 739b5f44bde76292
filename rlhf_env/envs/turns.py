"""Multi-turn episodes: the environment takes a turn after each of the agent's turns.

An agent's turn ends when it emits an end-of-turn token: the model's end-of-sequence token or one
of the task's ``turn_end`` strings (each must be a single token, e.g. ``"\\n"``). A *partner* (a
tool, a game master, the other party of a dialogue) then reads the turn's text and either ends
the episode or replies; the reply's tokens are appended to the observation and the agent takes
its next turn, up to ``max_turns`` turns.

Design (docs/formulation.md eq. 44). The environment's tokens are *forced observation tokens*:

- token in, token out: the agent's tokens are never re-tokenized; only the partner's reply text
  is encoded, on its own, and appended after the agent's last token;
- the action stream holds the agent's tokens only: one ``step`` per agent token, one reward,
  one KL term and one sampling log-prob each. The step that ends a turn returns the observation
  with the reply already appended and ``info["env_tokens"]``, how many tokens were appended;
- the observation (prompt, then the *response stream*: agent and environment tokens
  interleaved) is what the policy conditions on, so samplers and the frozen reference extend
  their KV caches by the inserted tokens instead of re-encoding the prefix;
- in training rows the environment's tokens are context with loss mask 0: no policy-gradient
  term, no KL term, no value target; a transition's next state is the state before the agent's
  next token, past the inserted reply (eq. 44).

A partner keeps its per-episode state in the episode's ``state`` dict, which starts as the
prompt's extra columns; whatever it records there (``solved`` for a game) reaches the reward
plugins as keyword columns, as a prompt's extra columns do. ``state["turns"]`` counts the
agent's finished turns.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

# Partners by name: ``partner="guess_number"`` or ``partner={"name": "guess_number", ...}``.
PARTNERS = {"guess_number": "rlhf_env.envs.guess_number:GuessNumber"}


@dataclass(frozen=True)
class Reply:
    """The partner's turn: ``text`` to append (None: nothing) or ``done`` to end the episode."""

    text: str | None = None
    done: bool = False


class Partner(Protocol):
    """The environment's side of a multi-turn episode."""

    def start(self, state: dict) -> None:
        """Set up a new episode's ``state`` (it holds the prompt's extra columns)."""

    def reply(self, turn: str, state: dict) -> Reply:
        """Answer the agent's finished turn (its decoded text)."""


def build_partner(spec: Any) -> Partner:
    """A partner from a name in :data:`PARTNERS`, ``"module:attr"``, ``{"name": ..., **params}``
    or an object with ``start`` and ``reply``."""
    params: dict = {}
    if isinstance(spec, dict):
        params = {k: v for k, v in spec.items() if k != "name"}
        spec = spec.get("name")
    if isinstance(spec, str):
        path = PARTNERS.get(spec, spec)
        if ":" not in path:
            raise ValueError(
                f"unknown partner {spec!r}: give one of {sorted(PARTNERS)} or 'module:attr'"
            )
        module, _, attr = path.partition(":")
        spec = getattr(importlib.import_module(module), attr)(**params)
    if not (callable(getattr(spec, "start", None)) and callable(getattr(spec, "reply", None))):
        raise TypeError(
            f"a partner needs start(state) and reply(turn, state) methods, got {spec!r}"
        )
    return spec


class Turns:
    """The turn mechanics an :class:`~rlhf_env.envs.episodes.EpisodeBatch` delegates to."""

    def __init__(
        self,
        partner: Partner,
        tokenizer,
        *,
        max_turns: int,
        turn_end: tuple[str, ...] | list[str],
        reply_template: str,
    ):
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {max_turns}")
        if "{reply}" not in reply_template:
            raise ValueError(f"reply_template must contain '{{reply}}', got {reply_template!r}")
        self.partner = partner
        self.tokenizer = tokenizer
        self.max_turns = max_turns
        self.reply_template = reply_template
        # Besides EOS (which the episode batch knows), these tokens end a turn.
        self.end_ids = {self._single_token(text) for text in turn_end}

    def _single_token(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(
                f"turn_end {text!r} encodes to {len(ids)} tokens {ids}; a turn end must be "
                "exactly one token of the tokenizer (or leave it out: EOS always ends a turn)"
            )
        return ids[0]

    def start(self, state: dict) -> None:
        state["turns"] = 0
        self.partner.start(state)

    def end_turn(self, turn_tokens: list[int], state: dict) -> tuple[list[int], bool]:
        """The partner's answer to a finished turn: (tokens to append, episode over)."""
        state["turns"] += 1
        turn = self.tokenizer.decode(turn_tokens, skip_special_tokens=True)
        reply = self.partner.reply(turn, state)
        if reply.done or state["turns"] >= self.max_turns:
            return [], True
        if reply.text is None:
            return [], False
        text = self.reply_template.format(reply=reply.text)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]), False

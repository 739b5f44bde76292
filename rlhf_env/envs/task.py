"""The arguments every rlhf_env task takes, and building an :class:`EpisodeBatch` from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rewards import build_reward
from rewards.protocol import REWARD_ARGUMENTS
from rlhf_env.data.chat import use_chat_template
from rlhf_env.data.models import load_causal_lm, load_model_config, load_tokenizer
from rlhf_env.data.prompts import PromptSet, load_prompts
from rlhf_env.envs.episodes import EpisodeBatch
from rlhf_env.envs.turns import Turns, build_partner


@dataclass
class TaskSpec:
    """What a task is made of; every field is a ``gym.make`` keyword argument."""

    prompts: Any = "movie-reviews"
    """Prompt source: offline default name, file path, ``datasets`` dataset or name, or list."""
    model: Any = "smollm2-135m-instruct"
    """Reference model (and tokenizer): offline default name, ``"tiny"``, path or hub id."""
    reward: Any = "vader"
    """Reward: a name, ``"module:attr"``, callable, ``{"name", "weight", "params"}`` or a list."""
    tokenizer: Any = None
    """Tokenizer spec or object; defaults to the model's."""
    prompt_field: str = "prompt"
    """Column holding the prompt (a text or a conversation) in a file or dataset."""
    chat_template: Any = "auto"
    """Encode prompts with the tokenizer's chat template and its generation prompt: ``"auto"``
    when the tokenizer has one and the prompts are conversations (TRL's conversational format),
    ``True`` always (a text prompt becomes a user message), ``False`` never."""
    split: str = "train"
    """``"train"``, ``"test"`` (held-out prompts) or ``"all"``."""
    max_prompt_tokens: int = 64
    """Longest prompt accepted; longer prompts are an error (never silently truncated)."""
    max_new_tokens: int = 24
    """Response length at which an episode is truncated (multi-turn: the agent's and the
    environment's tokens together)."""
    kl_coef: float = 0.05
    """β of the per-token KL penalty; agents may change it at run time (``env.kl_coef = ...``)."""
    kl_estimator: str = "k1"
    """``"k1"`` (log-ratio), ``"k2"`` (½ log-ratio²) or ``"k3"`` ((ρ−1) − log ρ)."""
    reference_dtype: str = "float32"
    """Torch dtype of the frozen reference model (``"bfloat16"`` halves its memory)."""
    reference: Any = True
    """The frozen reference: ``True`` loads ``model`` (in ``reference_dtype``); ``False`` has
    none, for training without any KL term (β must stay 0: a step then runs no reference
    forward); or a loaded causal LM used as is (an agent's own base weights with its LoRA
    adapters switched off, so one copy of the base serves policy and reference)."""
    device: str = "cpu"
    """Where the reference model runs (``"cuda"``, ``"cuda:1"``, ...): ``gym.make(id,
    device="cuda")``."""

    partner: Any = None
    """Multi-turn (:mod:`rlhf_env.envs.turns`): the environment's side, which answers each of
    the agent's turns: a name (``"guess_number"``), ``"module:attr"``, ``{"name", **params}``
    or an object. ``None``: single-turn, EOS ends the episode."""
    max_turns: int = 1
    """Multi-turn: the agent's turns after which the episode ends."""
    turn_end: tuple = ()
    """Multi-turn: strings (one token each, e.g. ``"\\n"``) that end a turn, besides EOS."""
    reply_template: str = "{reply}"
    """Multi-turn: how the partner's reply text is written into the stream, around ``{reply}``."""

    def build(self, num_rows: int) -> tuple[EpisodeBatch, PromptSet]:
        """Load prompts, tokenizer, reference model and reward; return the batch and prompts."""
        prompts = load_prompts(self.prompts, field=self.prompt_field, split=self.split)
        if len(prompts) == 0:
            raise ValueError(f"prompt source {self.prompts!r} (split {self.split!r}) is empty")
        clashes = sorted(set(prompts.columns) & set(REWARD_ARGUMENTS))
        if clashes:
            raise ValueError(
                f"prompt source {self.prompts!r} has the column(s) {clashes}, names of reward "
                "arguments the environment passes itself; rename them"
            )
        if self.reference is False and self.kl_coef:
            raise ValueError(
                f"reference=False needs kl_coef=0 (got {self.kl_coef}): without a "
                "reference model there is no KL to penalise"
            )
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"device {self.device!r} asked for, but torch sees no CUDA GPU here "
                "(torch.cuda.is_available() is False); use device='cpu'"
            )
        reference = None
        if self.reference is True:
            reference = load_causal_lm(self.model, dtype=getattr(torch, self.reference_dtype))
            reference.requires_grad_(False).to(self.device)
        elif self.reference is not False:
            reference = self.reference
        tokenizer = load_tokenizer(self.tokenizer if self.tokenizer is not None else self.model)
        turns = None
        if self.partner is not None:
            turns = Turns(
                build_partner(self.partner),
                tokenizer,
                max_turns=self.max_turns,
                turn_end=self.turn_end,
                reply_template=self.reply_template,
            )
        batch = EpisodeBatch(
            num_rows=num_rows,
            reference=reference,
            tokenizer=tokenizer,
            reward=build_reward(self.reward),
            vocab_size=load_model_config(self.model).get_text_config().vocab_size,
            max_prompt_tokens=self.max_prompt_tokens,
            max_new_tokens=self.max_new_tokens,
            kl_coef=self.kl_coef,
            kl_estimator=self.kl_estimator,
            chat_template=use_chat_template(self.chat_template, tokenizer, prompts.conversational),
            turns=turns,
        )
        return batch, prompts

"""Loading causal LMs and tokenizers: offline defaults, local folders, hub ids, the tiny models.

A model spec is one of:
- ``"tiny"`` or ``"tiny-wide"``: a tiny random Llama built locally (:mod:`rlhf_env.data.tiny`);
- the name of a prepared offline default (``"smollm2-135m-instruct"``,
  :mod:`rlhf_env.data.assets`);
- a local folder, or a Hugging Face hub id (``org/name``; needs a network).
Remote code is never trusted. Dropout is switched off: RL needs the same log-prob for the same
token in the sampler and the learner.
"""

from __future__ import annotations

import socket
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlhf_env.data.assets import ASSETS, asset_path, received_folder
from rlhf_env.data.ops import disable_dropout
from rlhf_env.data.tiny import TINY_SHAPES, tiny_model, tiny_tokenizer


def resolve_model_path(spec: str) -> str:
    """The folder of an offline default's name, a local folder as given, or a hub id as given.

    A spec that looks like a path (it starts with ``/``, ``.`` or ``~``, or has more than one
    ``/``) but names no folder here is received from the asset source when one is set (a node of
    a cluster gets the driver's folder); otherwise it is a ``FileNotFoundError`` saying so,
    instead of the hub's "Repo id must be in the form ..." error.
    """
    if spec in ASSETS:
        return str(asset_path(spec))
    path = Path(spec).expanduser()
    if path.exists():
        return str(path)
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1:
        received = received_folder(spec)
        if received is not None:
            return str(received)
        raise FileNotFoundError(
            f"no model at {spec} on host {socket.gethostname()}: it is not a folder. Give an "
            "existing folder saved with save_pretrained (on every node of a cluster), an "
            f"offline default ({', '.join(ASSETS)}; prepared by `rlhf-env prepare`), 'tiny', "
            "or a hub id org/name"
        )
    return spec


def with_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """The tokenizer with a pad token (its eos token when it has none, as causal LMs often do)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(spec: str | PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """A tokenizer from a spec (see the module docstring), with a pad token set."""
    if isinstance(spec, PreTrainedTokenizerBase):
        return spec
    if spec in TINY_SHAPES:
        return tiny_tokenizer()
    return with_pad_token(
        AutoTokenizer.from_pretrained(resolve_model_path(spec), trust_remote_code=False)
    )


def load_causal_lm(
    spec: str | PreTrainedModel, dtype: torch.dtype | str = torch.float32
) -> PreTrainedModel:
    """A causal LM in eval mode with dropout off, from a spec (see the module docstring)."""
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if isinstance(spec, PreTrainedModel):
        model = spec
    elif spec in TINY_SHAPES:
        model = tiny_model(name=spec).to(dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            resolve_model_path(spec), dtype=dtype, trust_remote_code=False
        )
    return disable_dropout(model).eval()


def load_model_config(spec: str | PreTrainedModel) -> PretrainedConfig:
    """A model's config without loading its weights."""
    if isinstance(spec, PreTrainedModel):
        return spec.config
    if spec in TINY_SHAPES:
        return tiny_model(name=spec).config
    return AutoConfig.from_pretrained(resolve_model_path(spec), trust_remote_code=False)

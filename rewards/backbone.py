"""Transformer backbones for model-based rewards: loading one without a head, and pooling it.

Shared by the ``embedding_similarity`` reward (mean pooling, as sentence-transformers does for
all-MiniLM-L6-v2) and the learned reward model (mean pooling for encoders, the last real token
for causal LMs).

A backbone spec is an offline default's name (``"all-minilm-l6-v2"``, ``"smollm2-135m-instruct"``;
see :mod:`rlhf_env.data.assets`), ``"tiny"`` (the tiny random Llama of :mod:`rlhf_env.data.tiny`),
a local folder or a hub id. It loads with ``transformers.AutoModel`` (the trunk, no task head),
never with remote code.
"""

from __future__ import annotations

from typing import Any

import torch

POOLINGS = ("mean", "last")


def load_backbone(spec: str) -> tuple[Any, Any]:
    """``(tokenizer, model)``: the tokenizer (with a pad token) and the headless trunk."""
    from transformers import AutoModel, AutoTokenizer

    from rlhf_env.data.models import resolve_model_path, with_pad_token
    from rlhf_env.data.tiny import tiny_model, tiny_tokenizer

    if spec == "tiny":
        return tiny_tokenizer(), tiny_model().model  # Llama trunk, no LM head
    # An offline default's name becomes its prepared folder (raising, with the command that
    # prepares it, when missing); a local folder or hub id is used as is.
    path = resolve_model_path(spec)
    tokenizer = with_pad_token(AutoTokenizer.from_pretrained(path, trust_remote_code=False))
    return tokenizer, AutoModel.from_pretrained(path, trust_remote_code=False)


def default_pooling(config: Any) -> str:
    """``"mean"`` for a bidirectional encoder (BERT family), ``"last"`` for a causal LM."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            f"a {config.model_type!r} backbone is an encoder-decoder; use an encoder (BERT-style) "
            "or a decoder-only causal LM"
        )
    is_encoder = config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return "mean" if is_encoder and not getattr(config, "is_decoder", False) else "last"


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """``[batch, hidden]`` from ``[batch, seq, hidden]`` hidden states and the attention mask."""
    if pooling == "mean":
        return mean_pool(hidden, mask)
    if pooling == "last":
        return last_token_pool(hidden, mask)
    raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of the hidden states of the real (unmasked) tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of the last real token (right or left padding alike)."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (mask.to(torch.long) * positions).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

"""Loading policy/reference models and tokenizers: offline defaults, local paths, hub ids, tiny.

A model spec is one of:
- ``"tiny"``: a tiny random Llama and word-level tokenizer built locally in milliseconds (tests);
  ``"tiny-wide"`` the same with attention heads of 32 (what vLLM's CPU attention needs);
- the name of a prepared offline default (``"smollm2-135m-instruct"``, see ``rlhf_env.assets``);
- a local folder or a Hugging Face hub id (needs a network for hub ids).
Remote code is never trusted. Dropout is switched off: RL needs the same log-prob for the same
token in the sampler and the learner.
"""

from __future__ import annotations

import functools
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

TINY = "tiny"
# The tiny models by name: (hidden size, attention heads). "tiny-wide" has heads of 32, the
# smallest size vLLM's CPU attention supports; "tiny" (heads of 8) is transformers-only.
TINY_SHAPES = {TINY: (32, 4), "tiny-wide": (64, 2)}

# The tiny task's whole vocabulary: everyday words with VADER polarity either way, so a
# sentiment reward has something to learn on a model that fits in a few kilobytes.
TINY_WORDS = tuple((
    "the a this that movie film story plot actor acting music scene ending it was is were and "
    "but so very really quite too not good great love wonderful amazing best fun happy beautiful "
    "nice brilliant enjoy bad awful terrible boring worst hate sad dull poor ugly waste slow "
    "long short funny strange simple i we you they of to in with at"
).split())
TINY_SPECIAL = ("<pad>", "<eos>", "<unk>")


def _resolve(spec: str) -> str:
    """Map an offline default's name to its prepared folder; leave paths and hub ids alone."""
    from rlhf_env import assets

    if spec in assets.ASSETS:
        return str(assets.asset_path(spec))
    return spec


@functools.cache
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over :data:`TINY_WORDS`."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {word: i for i, word in enumerate(TINY_SPECIAL + TINY_WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def tiny_model(seed: int = 0, name: str = TINY) -> LlamaForCausalLM:
    """A tiny random Llama (about 40k parameters) over the tiny vocabulary; same seed, same weights."""
    tokenizer = tiny_tokenizer()
    hidden, heads = TINY_SHAPES[name]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval()


def load_tokenizer(spec: str | PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """A tokenizer from a spec (see module docstring), with a pad token set."""
    if isinstance(spec, PreTrainedTokenizerBase):
        return spec
    if spec in TINY_SHAPES:
        return tiny_tokenizer()
    tokenizer = AutoTokenizer.from_pretrained(_resolve(spec), trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    spec: str | PreTrainedModel, dtype: torch.dtype | str = torch.float32
) -> PreTrainedModel:
    """A causal LM in eval mode with dropout off, from a spec (see module docstring)."""
    if isinstance(spec, PreTrainedModel):
        model = spec
    elif spec in TINY_SHAPES:
        model = tiny_model(name=spec)
    else:
        path = _resolve(spec)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=False)
    disable_dropout(model)
    return model.eval()


def disable_dropout(model: torch.nn.Module) -> None:
    """Set every dropout probability to 0 (sampler and learner log-probs must agree)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for key in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if hasattr(model.config, key):
            setattr(model.config, key, 0.0)


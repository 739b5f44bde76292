"""Tiny random models over a 63-word vocabulary, built locally in milliseconds: the tests' task.

``"tiny"`` is a 2-layer Llama with heads of 8 (about 40k parameters, ``transformers`` only);
``"tiny-wide"`` has heads of 32, the smallest size vLLM's CPU attention supports. The same seed
gives the same weights. The tokenizer has a chat template of its own words, so conversational
prompts work on the tiny task too.
"""

from __future__ import annotations

import functools

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

# The tiny models by name: (hidden size, attention heads).
TINY_SHAPES = {"tiny": (32, 4), "tiny-wide": (64, 2)}

# The tiny task's whole vocabulary: everyday words with VADER polarity either way, so a
# sentiment reward has something to learn on a model that fits in a few kilobytes.
TINY_WORDS = tuple(
    (
        "the a this that movie film story plot actor acting music scene ending it was is were and "
        "but so very really quite too not good great love wonderful amazing best fun happy "
        "beautiful nice brilliant enjoy bad awful terrible boring worst hate sad dull poor ugly "
        "waste slow long short funny strange simple i we you they of to in with at"
    ).split()
)
TINY_SPECIAL = ("<pad>", "<eos>", "<unk>")
# A chat template in the tiny vocabulary: each message is its role's word and its content
# ("we" system, "you" user, "i" assistant); the generation prompt opens the assistant's turn.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{{ {'system': 'we', 'user': 'you', 'assistant': 'i'}[m['role']] }} {{ m['content'] }} "
    "{% endfor %}{% if add_generation_prompt %}i{% endif %}"
)


@functools.cache
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over :data:`TINY_WORDS`, with
    :data:`TINY_CHAT_TEMPLATE`."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {word: i for i, word in enumerate(TINY_SPECIAL + TINY_WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        chat_template=TINY_CHAT_TEMPLATE,
    )


def tiny_model(seed: int = 0, name: str = "tiny") -> LlamaForCausalLM:
    """A tiny random Llama over the tiny vocabulary (see the module docstring), in eval mode."""
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

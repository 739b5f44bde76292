"""Prompts as text or as conversations (TRL's conversational format), and their token ids.

A conversation is a list of messages ``{"role": ..., "content": ...}``, as in TRL's
conversational datasets: ``[{"role": "user", "content": "Name a colour."}]``. It becomes tokens
through the tokenizer's chat template with the generation prompt (the opening of the assistant's
turn), so the model answers it. A conversational prompt gets a conversational completion, one
assistant message ``[{"role": "assistant", "content": text}]``, as TRL hands its rewards.

:func:`use_chat_template` settles a task's ``chat_template`` setting (``"auto"``, ``True`` or
``False``) once, at build time; :func:`prompt_ids` then encodes each prompt.
"""

from __future__ import annotations

from typing import Any

CHAT_TEMPLATE_SETTINGS = ("auto", True, False)


def is_conversation(prompt: Any) -> bool:
    """Whether ``prompt`` is a non-empty list of ``{"role", "content"}`` messages."""
    return (
        isinstance(prompt, (list, tuple))
        and len(prompt) > 0
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt)
    )


def check_prompt(prompt: Any) -> Any:
    """``prompt`` if it is a non-empty text or a conversation; a clear error otherwise."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string or a conversation, got {prompt!r}")
        return prompt
    if not is_conversation(prompt):
        raise ValueError(
            "a prompt is a text or a conversation, a list of {'role': ..., 'content': ...} "
            f"messages; got {str(prompt)[:80]}"
        )
    return [dict(message) for message in prompt]


def use_chat_template(setting: Any, tokenizer, conversational: bool) -> bool:
    """Whether prompts go through the tokenizer's chat template.

    ``"auto"``: when the tokenizer has a template and the prompts are conversations. ``True``:
    always (a text prompt becomes one user message). ``False``: never, so conversations are an
    error (they have no token form without a template).
    """
    if setting not in CHAT_TEMPLATE_SETTINGS or not isinstance(setting, (str, bool)):
        raise ValueError(f"chat_template must be one of {CHAT_TEMPLATE_SETTINGS}, got {setting!r}")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if setting is False and conversational:
        raise ValueError(
            "the prompts are conversations but chat_template=False: a conversation becomes "
            "tokens only through the chat template; use chat_template='auto' or True"
        )
    if (setting is True or conversational) and not has_template:
        raise ValueError(
            f"the tokenizer {type(tokenizer).__name__} ({tokenizer.name_or_path or 'unnamed'}) "
            "has no chat template, needed for "
            + ("chat_template=True" if setting is True else "conversational prompts")
            + "; use an instruct model's tokenizer or give text prompts"
        )
    return setting is True or (setting == "auto" and conversational and has_template)


def prompt_ids(tokenizer, prompt: str | list[dict], templated: bool) -> list[int]:
    """The token ids of a prompt: chat-templated with the generation prompt, or the plain text.

    A conversation needs ``templated``; a text under a template is one user message.
    """
    if not templated:
        if not isinstance(prompt, str):
            raise ValueError(
                "a conversational prompt needs the chat template; make the task with "
                "chat_template='auto' or True"
            )
        return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(encoded["input_ids"])


def completion_as(prompt: str | list[dict], text: str) -> str | list[dict]:
    """The completion in the prompt's format: text, or one assistant message (TRL's)."""
    return text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]

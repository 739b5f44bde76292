"""``embedding_similarity``: cosine similarity between a completion and a reference text.

Texts are embedded as sentence-transformers does for all-MiniLM-L6-v2 (Reimers & Gurevych 2019),
with plain ``transformers``: the encoder's last hidden states, mean-pooled over the attention
mask, L2-normalised; the reward is the dot product of the two embeddings, in [-1, 1].

The default model ``"all-minilm-l6-v2"`` is the offline asset prepared by ``rlhf-env prepare``
(the offline defaults); any other value is a local folder or a hub id for ``from_pretrained``, never
with remote code. torch and transformers are imported, and the model loaded, on the first call;
the loaded model is shared by every reward instance that names it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from rewards.protocol import as_texts
from rewards.registry import register_reward

DEFAULT_MODEL = "all-minilm-l6-v2"


@register_reward("embedding_similarity")
@dataclass
class EmbeddingSimilarity:
    """Cosine similarity of each completion to its reference text, in [-1, 1].

    The reference is ``reference`` when given (the same for every sample), otherwise the
    per-sample keyword argument named ``column`` (a prompt-dataset column, as TRL passes them).
    Texts are truncated to ``max_length`` tokens (256 for all-MiniLM-L6-v2 in
    sentence-transformers) and encoded ``batch_size`` at a time.
    """

    __name__ = "embedding_similarity"  # instances' name, which TRL logs rewards by

    reference: str | None = None
    model: str = DEFAULT_MODEL
    column: str = "reference"
    max_length: int = 256
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.reference is not None and not isinstance(self.reference, str):
            raise ValueError(f"reference must be a string, got {self.reference!r}")
        for param in ("max_length", "batch_size"):
            value = getattr(self, param)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{param} must be a positive integer, got {value!r}")

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        references = self._references(kwargs, len(completions))
        completions = as_texts(completions)
        if not completions:
            return []
        texts = list(dict.fromkeys([*completions, *references]))  # each distinct text once
        row = {text: i for i, text in enumerate(texts)}
        embeddings = _encoder(self.model).embed(texts, self.max_length, self.batch_size)
        ours = embeddings[[row[c] for c in completions]]
        theirs = embeddings[[row[r] for r in references]]
        return [max(-1.0, min(1.0, cos)) for cos in (ours * theirs).sum(dim=-1).tolist()]

    def _references(self, kwargs: dict[str, Any], n: int) -> list[str]:
        """The reference text of each sample: the fixed one, or the ``column`` keyword argument."""
        if self.reference is not None:
            return [self.reference] * n
        references = kwargs.get(self.column)
        if references is None:
            raise ValueError(
                f"embedding_similarity needs a reference text: pass reference='...' as a param, "
                f"or a per-sample {self.column!r} column"
            )
        if (
            isinstance(references, str)
            or len(references) != n
            or not all(isinstance(r, str) for r in references)
        ):
            raise ValueError(
                f"the {self.column!r} column must be a list of {n} strings, one per completion, "
                f"got {references!r}"
            )
        return list(references)


class _Encoder:
    """A transformers encoder with its tokenizer, mean-pooling texts into unit vectors."""

    def __init__(self, path: str) -> None:
        from rewards.backbone import load_backbone

        self.tokenizer, model = load_backbone(path)
        self.model = model.eval()

    def embed(self, texts: list[str], max_length: int, batch_size: int) -> Any:
        """``[len(texts), hidden]`` float tensor of L2-normalised mean-pooled embeddings."""
        import torch

        from rewards.backbone import mean_pool

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mean = mean_pool(hidden, batch["attention_mask"])
                chunks.append(torch.nn.functional.normalize(mean.float(), dim=-1))
        return torch.cat(chunks)


@functools.cache
def _encoder(model: str) -> _Encoder:
    """The encoder for a ``model`` param, loaded once per process."""
    if model == DEFAULT_MODEL:
        from rlhf_env.data.assets import asset_path  # raises, naming `rlhf-env prepare`, if missing

        return _Encoder(str(asset_path(DEFAULT_MODEL)))
    return _Encoder(model)

"""Fixtures for the reward tests: a tiny local sentence encoder, installable throwaway plugin
distributions, and an isolated reward registry."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rewards import registry
from rewards.builtin import embedding

_WORDS = (
    "a", "the", "film", "movie", "was", "good", "great", "bad", "terrible",
    "i", "loved", "it", "plot", "cat", "dog", "sat", "on", "mat",
)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of a random 1-layer BERT (hidden 16) with a lowercase word-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-encoder")
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *_WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=64,
    ).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def clean_encoder_cache() -> Iterator[None]:
    """Forget loaded encoders before and after a test that changes what a model name means."""
    embedding._encoder.cache_clear()
    yield
    embedding._encoder.cache_clear()


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A copy of the reward registry that the test may register into."""
    copy = dict(registry._REGISTRY)
    monkeypatch.setattr(registry, "_REGISTRY", copy)
    return copy


@pytest.fixture
def install_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str, str, dict[str, str]], None]]:
    """``install(dist, module, source, {name: "module:attr"})``: a real installed distribution.

    Writes ``module.py`` and ``<dist>-0.1.dist-info/`` (METADATA, entry_points.txt declaring the
    names in the ``rlhf_env.rewards`` group) into a folder on ``sys.path``, so that
    ``importlib.metadata`` finds it as it finds any pip-installed package.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    modules: list[str] = []

    def install(dist: str, module: str, source: str, names: dict[str, str]) -> None:
        (tmp_path / f"{module}.py").write_text(source)
        # The folder name carries the escaped name (PEP 427): importlib.metadata reads a dist's
        # identity from it, and "a-b-0.1" would pass for a distribution called "a".
        info = tmp_path / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = "".join(f"{name} = {target}\n" for name, target in names.items())
        (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{lines}")
        modules.append(module)

    yield install
    for module in modules:
        sys.modules.pop(module, None)

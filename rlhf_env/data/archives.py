"""Reading members out of wheel/zip and tar archives without ``extractall``: no member name can
escape the output path."""

from __future__ import annotations

import contextlib
import fnmatch
import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from rlhf_env.data.errors import AssetBuildError


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


def extract_file(archive: Path, pattern: str, out: Path) -> str:
    """Write the one member matching the fnmatch ``pattern`` to ``out``; return its name."""
    with _open_archive(archive) as members:
        matches = [n for n in members if fnmatch.fnmatchcase(n, pattern)]
        if len(matches) != 1:
            raise AssetBuildError(
                f"expected one member matching {pattern!r} in {archive.name}, found {matches}"
            )
        with members[matches[0]]() as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    return matches[0]


def extract_folder(archive: Path, folder: str, out: Path) -> None:
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

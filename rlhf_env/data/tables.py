"""Reading tabular sources (prompt and preference files) with ``datasets``, and their splits.

A source is a local ``.jsonl``/``.json``/``.csv``/``.parquet``/``.txt`` file, a
``datasets.Dataset`` or ``DatasetDict``, or (where the caller allows it) a hub dataset name.
Splits are deterministic: a ``DatasetDict`` that has the split uses it; otherwise every 10th row
(index 0, 10, 20, ...) is held out as ``"test"`` and the rest is ``"train"``.

A file that cannot be read is a :class:`DataFileError` naming the file and, for JSON lines, the
first line that is not valid JSON. ``datasets``' progress bars and log lines are kept quiet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPLITS = ("train", "test", "all")
FILE_BUILDERS = {
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
}


class DataFileError(ValueError):
    """A data file or dataset that cannot be used; the message names it and the problem."""


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    return split


def held_out(rows: list, split: str) -> list:
    """The ``split`` of a list: every 10th item (index 0, 10, ...) is ``"test"``."""
    if check_split(split) == "all":
        return list(rows)
    return [row for i, row in enumerate(rows) if (i % 10 == 0) == (split == "test")]


def load_split(
    source: Any, split: str, *, what: str, suffixes=tuple(FILE_BUILDERS), allow_hub: bool = False
):
    """The ``split`` of a file, dataset or (``allow_hub``) hub dataset, as a ``datasets.Dataset``.

    ``what`` names the data in error messages ("prompt file", "preference file").
    """
    import datasets

    check_split(split)
    dataset = _load(source, what=what, suffixes=suffixes, allow_hub=allow_hub)
    if isinstance(dataset, datasets.DatasetDict):
        if split in dataset and len(dataset) > 1:
            return dataset[split]
        dataset = datasets.concatenate_datasets(list(dataset.values()))
    return dataset.select(held_out(range(len(dataset)), split))


def require_columns(dataset, needed: list[str], *, where: str) -> None:
    """A clear error when the dataset lacks a column: which one, and which it has."""
    missing = [name for name in needed if name not in dataset.column_names]
    if missing:
        raise DataFileError(
            f"{where} has no column {', '.join(map(repr, missing))}; its columns are "
            f"{dataset.column_names}"
        )


def _load(source: Any, *, what: str, suffixes, allow_hub: bool):
    import datasets

    from rlhf_env.data.assets import cache_dir

    if isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
        return source
    if not isinstance(source, (str, Path)):
        raise TypeError(f"a {what} is a path or a datasets.Dataset; got {type(source).__name__}")
    path = Path(source)
    if path.suffix not in suffixes:
        if allow_hub and not path.exists():
            return _quietly(
                lambda: datasets.load_dataset(str(source), cache_dir=str(cache_dir() / "datasets"))
            )
        raise DataFileError(
            f"{what} {str(source)!r} has an unsupported type; supported: {', '.join(suffixes)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(source)!r} does not exist")
    try:
        return _quietly(
            lambda: datasets.load_dataset(
                FILE_BUILDERS[path.suffix],
                data_files=str(path),
                split="train",
                cache_dir=str(cache_dir() / "datasets"),
            )
        )
    except Exception as exc:  # pyarrow / pandas parse errors: say which file and line
        raise DataFileError(f"could not read {what} {str(path)!r}: {_problem(path, exc)}") from exc


def _problem(path: Path, exc: Exception) -> str:
    """The first line of a JSON-lines file that is not valid JSON, else the reader's error."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        json.loads(line)
                    except json.JSONDecodeError as error:
                        return (
                            f"line {number} is not valid JSON ({error.msg}): {line.strip()[:80]!r}"
                        )
    cause = exc.__cause__ or exc.__context__ or exc
    return f"{type(cause).__name__}: {cause}"


def _quietly(load):
    """Run a ``datasets`` load without its progress bars and info log lines."""
    from datasets.utils import logging as ds_logging

    bars, verbosity = ds_logging.is_progress_bar_enabled(), ds_logging.get_verbosity()
    ds_logging.disable_progress_bar()
    ds_logging.set_verbosity_error()
    try:
        return load()
    finally:
        ds_logging.set_verbosity(verbosity)
        if bars:
            ds_logging.enable_progress_bar()

"""Errors of the offline-asset layer; each message says what is missing and which command
fixes it."""

from __future__ import annotations


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

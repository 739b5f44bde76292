"""The ``rlhf-env`` command line: one group whose commands live beside it, by layer.

- :mod:`.env_commands`: ``prepare``, ``rollout``, ``generate``, ``reward list|check`` (no Ray);
- :mod:`.train_commands`: ``train``, ``eval``, ``plot``, ``reward-model train``;
- :mod:`.label_commands`: ``label serve|export|report`` (human preference labels).

An error caused by bad input or a missing asset prints one line (``Error: ...``), not a
traceback. Heavy libraries are imported inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations

import click


class _Group(click.Group):
    """Print the message of an error caused by bad input or a missing asset, not a traceback."""

    def invoke(self, ctx: click.Context):
        from gymnasium.error import Error as GymError
        from omegaconf.errors import OmegaConfBaseException

        from agents.core.errors import GuardStop, TrainingInterrupted
        from rewards import RewardPluginError, UnknownRewardError
        from rlhf_env.data.errors import AssetBuildError, AssetDownloadError, UnknownAssetError

        user_errors = (
            FileNotFoundError,
            UnknownAssetError,
            AssetDownloadError,
            AssetBuildError,
            RewardPluginError,
            UnknownRewardError,
            GymError,
            ValueError,
            OmegaConfBaseException,
            TrainingInterrupted,
            GuardStop,
        )
        try:
            return super().invoke(ctx)
        except user_errors as error:
            raise click.ClickException(f"{type(error).__name__}: {error}") from error


@click.group(cls=_Group)
def main() -> None:
    """rlhf-env: LLM text generation as a token-level Gymnasium environment."""


def _register() -> None:
    from agents.cli import env_commands, label_commands, train_commands

    for module in (env_commands, train_commands, label_commands):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

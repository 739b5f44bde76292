"""The reward-model trainer's configuration: typed sections with help text, a YAML preset
(``configs/reward_model.yaml``) and dotted overrides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rewards.backbone import POOLINGS
from rlhf_env.data.typed_config import describe, load_structured
from rlhf_env.data.typed_config import option as _f


@dataclass
class RMDataConfig:
    source: str = _f(
        "movie-reviews",
        "Preferences: 'movie-reviews' (sentiment pairs of Pang & Lee sentences) or a "
        ".jsonl/.json/.csv/.parquet file of {prompt, chosen, rejected} or "
        "{prompt, responses: [best, ..., worst]} rows, or the database URL of `rlhf-env label` "
        "(sqlite:///runs/labels.db).",
    )
    test_source: Optional[str] = _f(
        None,
        "Held-out preferences from another source (all its "
        "rows); null: every 10th row of `source`.",
    )


@dataclass
class RMModelConfig:
    backbone: str = _f(
        "all-minilm-l6-v2",
        "Backbone: offline default name, 'tiny', local folder "
        "or hub id (transformers AutoModel, no remote code).",
    )
    pooling: str = _f("auto", "auto (mean for encoders, last token for causal LMs), mean or last.")
    max_length: int = _f(96, "Tokens of prompt + response; longer texts lose their beginning.")
    freeze_embeddings: bool = _f(True, "Keep the token embedding matrix fixed (faster on CPU).")


@dataclass
class RMTrainConfig:
    epochs: int = _f(2, "Passes over the training preferences.")
    batch_size: int = _f(32, "Preferences (pairs or rankings) per optimiser step.")
    lr: float = _f(1e-4, "AdamW peak learning rate (linear warm-up, then linear decay to 0).")
    weight_decay: float = _f(0.01, "AdamW weight decay (not applied to biases and norms).")
    warmup_ratio: float = _f(0.1, "Fraction of the steps spent warming the learning rate up.")
    grad_clip: float = _f(1.0, "Clip the global gradient norm to this.")
    group_by_length: bool = _f(
        True,
        "Batch rows of similar length together (less padding, "
        "faster on CPU); batches still come in random order.",
    )
    eval_batch_size: int = _f(128, "Texts per forward pass when evaluating.")

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")


@dataclass
class RMRunConfig:
    name: str = _f("reward_model", "Run name; the model is saved in <output_dir>/<name>.")
    output_dir: str = _f("runs", "Folder of run folders.")
    seed: int = _f(0, "Seed of the head's initial weights, the data order and dropout.")
    threads: int = _f(0, "Torch CPU threads; 0 leaves torch's default.")
    log_every: int = _f(10, "Log training metrics every N optimiser steps.")
    wandb: str = _f(
        "auto", "auto (online with WANDB_API_KEY, else offline), online, offline, disabled."
    )
    wandb_project: str = _f("rlhf-env", "W&B project.")

    def __post_init__(self) -> None:
        if self.log_every < 1 or self.threads < 0:
            raise ValueError(
                f"run.log_every must be >= 1 and run.threads >= 0, got "
                f"{self.log_every} and {self.threads}"
            )


@dataclass
class RewardModelConfig:
    data: RMDataConfig = field(default_factory=RMDataConfig)
    model: RMModelConfig = field(default_factory=RMModelConfig)
    train: RMTrainConfig = field(default_factory=RMTrainConfig)
    run: RMRunConfig = field(default_factory=RMRunConfig)

    def __post_init__(self) -> None:
        if self.model.pooling not in ("auto", *POOLINGS):
            raise ValueError(
                f"model.pooling must be auto, mean or last, got {self.model.pooling!r}"
            )

    @property
    def run_dir(self) -> Path:
        return Path(self.run.output_dir) / self.run.name


def load_reward_model_config(
    path: str | Path | None = None, overrides: Sequence[str] = ()
) -> RewardModelConfig:
    """Defaults, then the YAML preset, then ``key=value`` overrides; typed and validated."""
    return load_structured(RewardModelConfig, path, overrides)


def describe_reward_model_config() -> list[str]:
    """``key = default: help`` for every field (for the command line's ``--help-config``)."""
    return describe(RewardModelConfig)

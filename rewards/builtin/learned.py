"""``reward_model``: the score of a trained reward model (docs/formulation.md eq. 18).

The model is one saved by :func:`agents.reward_model.trainer.train_reward_model` (a folder holding
``reward_model.json``); select it by its path::

    build_reward({"name": "reward_model", "params": {"path": "runs/reward_model"}})

Each completion is scored as ``prompt + completion``, exactly as the model was trained on
``prompt + response``. torch and transformers are imported, and the model loaded, on the first
call; the loaded model is shared by every reward instance that names the same folder (and
reloaded when the folder is trained again).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards.protocol import as_texts
from rewards.registry import register_reward

MODEL_FILE = "reward_model.json"  # = rewards.reward_model.MODEL_FILE, without importing torch


@register_reward("reward_model")
@dataclass
class LearnedReward:
    """The scalar reward of a trained reward model for each ``prompt + completion``.

    ``normalize=True`` maps scores to ``(score − mean) / std`` with the mean and standard
    deviation of the model's scores on its held-out preferences, saved at training time, so
    that a reward weight means the same for any trained model. Texts are scored
    ``batch_size`` at a time on ``device`` (``"cpu"``, ``"cuda"``, ...) in ``dtype``.

    ``dtype="float64"`` (the default) makes a score independent of the batch it is computed in
    to about 1e-14: in float32, padding and matrix-kernel choices move scores by about 1e-6,
    which fails :func:`rewards.check_reward`'s batch-size independence. ``"float32"`` is about
    twice as fast and accurate enough for training.
    """

    __name__ = "reward_model"  # instances' name, which TRL logs rewards by

    path: str | os.PathLike | None = None
    normalize: bool = False
    batch_size: int = 32
    device: str = "cpu"
    dtype: str = "float64"

    def __post_init__(self) -> None:
        if self.path is None:
            raise ValueError(
                "reward_model needs path=: the folder of a trained reward model "
                "(e.g. runs/reward_model)"
            )
        if not (Path(self.path) / MODEL_FILE).is_file():
            raise FileNotFoundError(
                f"reward_model path {str(self.path)!r} is not a trained reward model (no "
                f"{MODEL_FILE} there); train one with `rlhf-env reward-model train` "
                "(preset: configs/reward_model.yaml)"
            )
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {size!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        if not completions:
            return []
        model = _model(*_key(self.path), self.device, self.dtype)
        texts = [p + c for p, c in zip(as_texts(prompts), as_texts(completions))]
        scores = model.score_texts(texts, batch_size=self.batch_size)
        if self.normalize:
            scores = (scores - model.info["score_mean"]) / max(model.info["score_std"], 1e-8)
        return [float(s) for s in scores.tolist()]


def _key(path: str | os.PathLike) -> tuple[str, int]:
    """The resolved folder and its model file's mtime: retraining in place reloads."""
    folder = Path(path).resolve()
    return str(folder), (folder / MODEL_FILE).stat().st_mtime_ns


@functools.lru_cache(maxsize=4)
def _model(folder: str, mtime_ns: int, device: str, dtype: str) -> Any:
    """The reward model saved in ``folder``, loaded once per process (per version, device and
    dtype)."""
    import torch

    from rewards.reward_model import load_reward_model

    return load_reward_model(folder, device=device, dtype=getattr(torch, dtype))

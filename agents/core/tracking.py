"""Weights & Biases tracking that never needs a network and never writes outside the run folder.

``run.wandb: auto`` runs online when ``WANDB_API_KEY`` is set and offline otherwise (upload
later with ``wandb sync <run folder>/wandb/offline-run-*``). W&B is imported only when tracking is
on. Every W&B directory (run files, cache, config, artifacts) is pointed into the run folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from rewards.protocol import as_texts


class Tracker:
    """Logs metric dicts, sample tables and the config of one run."""

    def __init__(self, mode: str, project: str, name: str, run_dir: Path, config: dict):
        if mode == "auto":
            mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
        if mode not in ("online", "offline", "disabled"):
            raise ValueError(f"run.wandb must be auto, online, offline or disabled, got {mode!r}")
        self.run = None
        if mode == "disabled":
            return
        import wandb

        wandb_dir = Path(run_dir).resolve()
        for variable, sub in (
            ("WANDB_DIR", ""),
            ("WANDB_CACHE_DIR", ".wandb-cache"),
            ("WANDB_CONFIG_DIR", ".wandb-config"),
            ("WANDB_DATA_DIR", ".wandb-data"),
            ("WANDB_ARTIFACT_DIR", ".wandb-artifacts"),
        ):
            os.environ[variable] = str(wandb_dir / sub)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project,
            name=name,
            dir=str(wandb_dir),
            config=config,
            mode=mode,
            resume="allow",
            id=_run_id(wandb_dir, name),
        )
        self._wandb = wandb

    def log(self, metrics: dict, step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def log_samples(self, samples: list[tuple[str, str, float]], step: int) -> None:
        """A table of (prompt, completion, score) generations (a conversation shown as text)."""
        if self.run is not None and samples:
            prompts = as_texts([prompt for prompt, _, _ in samples])
            table = self._wandb.Table(
                columns=["prompt", "completion", "score"],
                data=[[p, c, s] for p, (_, c, s) in zip(prompts, samples)],
            )
            self.run.log({"samples": table}, step=step)

    def alert(self, title: str, text: str) -> None:
        """A W&B alert (shown in the run and sent by e-mail or Slack when online)."""
        if self.run is not None:
            self.run.alert(title=title, text=text)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def _run_id(run_dir: Path, name: str) -> str:
    """A stable W&B run id per run folder, so a resumed run continues the same W&B run."""
    id_file = run_dir / ".wandb-run-id"
    if id_file.exists():
        return id_file.read_text().strip()
    import uuid

    run_id = f"{name}-{uuid.uuid4().hex[:8]}"
    id_file.write_text(run_id)
    return run_id

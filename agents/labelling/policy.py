"""Which policy the labelled responses come from: an initial model, a run folder (its last
checkpoint) or one checkpoint folder, with the task it was trained on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TASK = "rlhf_env/Sentiment-v0"


@dataclass(frozen=True)
class PolicySource:
    """A policy to sample from: ``model`` is its model spec (what ``load_causal_lm`` reads),
    ``label`` what the judgments record as the policy, ``checkpoint`` the checkpoint folder (None
    for an initial model), ``task`` and ``task_overrides`` the environment to sample it in."""

    model: str
    label: str
    checkpoint: str | None
    task: str
    task_overrides: dict[str, Any] = field(default_factory=dict)


def resolve_policy(spec: str | None, task: str | None = None) -> PolicySource:
    """The policy named by ``spec``:

    - a run folder (it has ``config.yaml``): its last checkpoint, on the run's task;
    - a checkpoint folder (``<run>/checkpoints/iter_NNNNNN``): that checkpoint, on the run's task;
    - anything else (or None: the task's own model): a model spec, the initial model, on
      ``task`` (default Sentiment-v0).

    ``task`` given with a run or checkpoint overrides the run's task id (its overrides stay).
    """
    path = Path(spec) if spec else None
    if path is None or not path.is_dir() or not _is_run_or_checkpoint(path):
        task = task or DEFAULT_TASK
        model = spec or _task_model(task)
        return PolicySource(model, model, None, task)
    from agents.driver.checkpoints import POLICY, latest_checkpoint

    if (path / "config.yaml").is_file():
        run_dir, checkpoint = path, latest_checkpoint(path)
        if checkpoint is None:
            raise FileNotFoundError(
                f"the run folder {spec} has no checkpoint yet; train it first or give its "
                "initial model"
            )
    else:
        run_dir, checkpoint = path.parent.parent, path
    config = _run_config(run_dir)
    return PolicySource(
        model=str(checkpoint / POLICY),
        label=str(run_dir),
        checkpoint=checkpoint.name,
        task=task or config.task.id,
        task_overrides=dict(config.task.overrides),
    )


def _is_run_or_checkpoint(path: Path) -> bool:
    """A run folder has ``config.yaml``; a checkpoint is ``<run>/checkpoints/<name>/policy``
    (a plain model folder, saved with ``save_pretrained``, is neither)."""
    return (path / "config.yaml").is_file() or (
        path.parent.name == "checkpoints" and (path / "policy").is_dir()
    )


def _run_config(run_dir: Path):
    from agents.core.config import load_config

    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (it has no config.yaml)")
    return load_config(run_dir / "config.yaml")


def _task_model(task: str) -> str:
    """The model spec a task samples with by default (its registered ``model`` argument)."""
    import gymnasium as gym

    import rlhf_env  # noqa: F401  (registers the tasks)

    return gym.spec(task).kwargs["model"]

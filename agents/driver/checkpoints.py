"""Checkpoints of a run folder: write them atomically, find the last one, restore it, export the
policy.

``<run>/checkpoints/iter_NNNNNN/`` holds ``algorithm/`` (RLlib's state: policy, critic,
optimizer, the learner's minibatch order), ``driver.json`` (the iteration, the KL controller and
the guard) and ``policy/`` (the trained policy saved with ``save_pretrained``: safetensors and
the tokenizer; with LoRA the adapters merged in, and ``policy_adapter/`` the adapters alone;
RLlib's state then holds only the adapters and the critic). A checkpoint is written into
``iter_NNNNNN.partial`` and renamed when complete, so a run killed while saving leaves the
previous checkpoint as the last one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.utils.metrics import WEIGHTS_SEQ_NO

from agents.core.lora import is_lora, merged_copy
from agents.driver.weights import current_policy

CHECKPOINTS = "checkpoints"
DRIVER_STATE = "driver.json"
POLICY = "policy"


def save_checkpoint(
    algo,
    iteration: int,
    run_dir: Path,
    *,
    driver_state: dict,
    model_spec: str,
    keep: int,
    protect: str | None = None,
) -> Path:
    """RLlib state + the driver's state (KL controller, guard) + exported policy; keep the
    newest ``keep`` (0: all) and the checkpoint named ``protect`` (the guard's last good one)."""
    final = run_dir / CHECKPOINTS / checkpoint_name(iteration)
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    algo.save_to_path(str((partial / "algorithm").resolve()))
    export_policy(algo, partial / POLICY, model_spec)
    (partial / DRIVER_STATE).write_text(json.dumps({"iteration": iteration, **driver_state}))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    if keep > 0:
        for old in checkpoints(run_dir)[:-keep]:
            if old.name != protect:
                shutil.rmtree(old)
    return final


def restore_checkpoint(algo, checkpoint: Path) -> dict:
    """Restore RLlib's state and hand the restored weights to every env runner (see
    :meth:`~agents.core.env_runner.LLMEnvRunner.load_restored_weights`: RLlib's own sync skips
    a checkpoint older than the runners' weights, which a guard rollback is); return the
    driver's state (``iteration`` and what it saved)."""
    algo.restore_from_path(str((checkpoint / "algorithm").resolve()))
    if algo.env_runner_group is not None:
        module = f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}/{DEFAULT_MODULE_ID}"
        state = algo.learner_group.get_state(components=[module], inference_only=True)
        weights = {
            key: state[COMPONENT_LEARNER][key] for key in (COMPONENT_RL_MODULE, WEIGHTS_SEQ_NO)
        }
        algo.env_runner_group.foreach_env_runner(
            lambda runner: runner.load_restored_weights(weights), local_env_runner=True
        )
    return json.loads((checkpoint / DRIVER_STATE).read_text())


def export_policy(algo, folder: Path, model_spec: str) -> None:
    """The trained policy as a plain ``transformers`` folder (safetensors) with its tokenizer;
    with LoRA the adapters merged in, and the adapters alone (PEFT, safetensors) in
    ``<folder>_adapter``."""
    from rlhf_env.data.models import load_tokenizer

    policy = current_policy(algo)
    merged_copy(policy).save_pretrained(folder, safe_serialization=True)
    load_tokenizer(model_spec).save_pretrained(folder)
    if is_lora(policy):
        policy.save_pretrained(folder.with_name(folder.name + "_adapter"), safe_serialization=True)


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    return sorted(
        p
        for p in (run_dir / CHECKPOINTS).glob("iter_*")
        if not p.name.endswith(".partial") and (p / DRIVER_STATE).exists()
    )


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:06d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    complete = checkpoints(run_dir)
    return complete[-1] if complete else None

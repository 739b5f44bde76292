"""The training driver (PPO, online DPO): RLlib iterations, KL control, evaluation, tracking,
checkpoints.

Each iteration, in order:
1. push β (from the KL controller) and the iteration number to every env runner;
2. ``algo.train()``: env runners sample complete episodes, the learner connector builds one row
   per episode with GAE, the learner runs PPO's epochs, RLlib syncs the new weights back;
3. update the KL controller from the measured per-token KL (seed 000 rule or proportional);
4. log metrics (SPEC.md section 6 names) and, every few iterations, sample generations;
5. evaluate on held-out prompts and checkpoint, every few iterations and at the end.

A run folder holds ``config.yaml``, ``metrics.jsonl``, ``checkpoints/iter_NNNNNN/`` (RLlib state
of policy, critic and optimizer; the driver's KL controller and iteration; the policy exported
with ``save_pretrained``) and the W&B files. Restarting the same command resumes from the last
checkpoint: sampling seeds derive from the iteration and the learner's minibatch order is in its
state, so the resumed run continues as the uninterrupted one would.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from agents.config import TrainConfig, to_dict
from agents.evaluation import Evaluator
from agents.kl_control import make_kl_controller
from agents.algorithm import build_algorithm_config, threads_per_process
from agents.tracking import Tracker

PROGRESS_KEYS = ("reward/score", "reward/kl", "dpo/rewards/accuracy", "dpo/loss")
CHECKPOINTS = "checkpoints"
DRIVER_STATE = "driver.json"
POLICY = "policy"


def init_ray(num_cpus: int) -> None:
    """Local Ray by default; an existing cluster when ``RAY_ADDRESS`` is set (no code change)."""
    import ray
    from ray.tune.trainable import trainable

    from rlhf_env.assets import cache_dir

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Every RLlib Algorithm makes an (empty) log folder under this module constant, by default
    # ~/ray_results, with no option to move it: keep it in the project's cache, not in $HOME.
    trainable.DEFAULT_STORAGE_PATH = str(cache_dir() / "ray_results")
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=max(num_cpus, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False)


def train(config: TrainConfig, *, progress: bool = True) -> list[dict]:
    """Train ``config.algorithm`` as configured; return this call's per-iteration records."""
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.structured(config), run_dir / "config.yaml")
    torch.set_num_threads(threads_per_process(config))
    init_ray(1 + config.scale.num_env_runners + config.scale.num_learners)

    algo = build_algorithm_config(config).build_algo()
    controller = make_kl_controller(**_controller_kwargs(config))
    start = 0
    checkpoint = latest_checkpoint(run_dir) if config.run.resume else None
    if checkpoint is not None:
        algo.restore_from_path(str((checkpoint / "algorithm").resolve()))
        state = json.loads((checkpoint / DRIVER_STATE).read_text())
        controller.load_state_dict(state["kl_controller"])
        start = state["iteration"]
        for log in ("metrics.jsonl", "eval.jsonl"):  # drop what ran after the checkpoint
            _truncate_log(run_dir / log, start)
    tracker = Tracker(config.run.wandb, config.run.wandb_project, config.run.name, run_dir,
                      to_dict(config))
    evaluator = Evaluator(config, pairs=_held_out_pairs(config))
    if start == 0:
        _evaluate(evaluator, algo, tracker, run_dir, step=0)

    records = []
    bar = tqdm(range(start, config.run.iterations), desc=config.algorithm, disable=not progress,
               initial=start, total=config.run.iterations)
    for iteration in bar:
        _push_round(algo, controller.beta, iteration)
        result = algo.train()
        record = {"iteration": iteration + 1, **iteration_metrics(result)}
        if "reward/kl" in record:  # online: the environments measured the KL
            record["policy/kl_coef"] = controller.beta
            controller.update(record["reward/kl"], n_steps=max(1, int(record["perf/tokens"])))
        records.append(record)
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        tracker.log(record, step=iteration + 1)
        if _due(iteration, config.run.samples_every, config.run.iterations):
            tracker.log_samples(_pop_samples(algo), step=iteration + 1)
        if _due(iteration, config.run.eval_every, config.run.iterations):
            _evaluate(evaluator, algo, tracker, run_dir, step=iteration + 1)
        if _due(iteration, config.run.checkpoint_every, config.run.iterations):
            save_checkpoint(algo, controller, iteration + 1, run_dir, config)
        bar.set_postfix({key.split("/")[-1]: f"{record[key]:+.4f}" for key in PROGRESS_KEYS
                         if key in record})
    tracker.finish()
    algo.stop()
    return records


def iteration_metrics(result: dict) -> dict[str, float]:
    """SPEC.md section 6 metric names from an RLlib result dict (online or offline)."""
    learner = result["learners"]["default_policy"]
    record = {key: float(value) for key, value in learner.items()
              if key.startswith(("losses/", "dpo/"))}
    record["perf/iteration_s"] = float(result["time_this_iter_s"])
    if "env_runners" not in result:  # offline: no environment was stepped
        return record
    runners = result["env_runners"]
    record.update({key: float(value) for key, value in runners.items()
                   if key.startswith("reward/")})
    record["policy/kl_ref"] = record["reward/kl"]
    record["perf/tokens"] = float(runners["num_env_steps_sampled"])
    sample_s = result["timers"]["env_runner_sampling_timer"]
    learn_s = result["timers"]["learner_update_timer"]
    record["perf/sample_tokens_per_s"] = record["perf/tokens"] / max(sample_s, 1e-9)
    record["perf/learn_tokens_per_s"] = record["perf/tokens"] / max(learn_s, 1e-9)
    if "losses/entropy" in record:
        record["policy/entropy"] = record["losses/entropy"]
    return record


def _truncate_log(path: Path, iteration: int) -> None:
    """Keep the JSON-lines records of iterations up to ``iteration`` (resume after a crash)."""
    if path.exists():
        kept = [line for line in path.read_text().splitlines()
                if json.loads(line)["iteration"] <= iteration]
        path.write_text("".join(line + "\n" for line in kept))


def _controller_kwargs(config: TrainConfig) -> dict:
    kl = config.kl
    kwargs = {"kind": kl.controller, "beta": kl.init_coef}
    if kl.controller in ("adaptive", "proportional"):
        kwargs.update(target=kl.target, min_beta=kl.min_coef)
    if kl.controller == "proportional":
        kwargs["horizon"] = kl.horizon
    return kwargs


def _held_out_pairs(config: TrainConfig):
    """Offline DPO's held-out pair table (built with the training table), else None."""
    if config.algorithm != "dpo_offline":
        return None
    import pyarrow.parquet as pq

    from agents.dpo.offline import prepare_pair_tables

    return pq.read_table(prepare_pair_tables(config)["test"])


def _push_round(algo, beta: float, iteration: int) -> None:
    if algo.env_runner_group is None:  # offline
        return
    algo.env_runner_group.foreach_env_runner(
        lambda runner: runner.env is not None and runner.set_round(beta, iteration),
        local_env_runner=True,
    )


def _pop_samples(algo) -> list[tuple[str, str, float]]:
    if algo.env_runner_group is None:  # offline
        return []
    results = algo.env_runner_group.foreach_env_runner(
        lambda runner: runner.pop_samples() if runner.env is not None else [],
        local_env_runner=True,
    )
    return [sample for samples in results for sample in samples]


def _due(iteration: int, every: int, total: int) -> bool:
    return iteration + 1 == total or (every > 0 and (iteration + 1) % every == 0)


def policy_of(algo) -> torch.nn.Module:
    """The current policy LM: the local env runner's copy (synced after every update), or the
    local learner's where there are no env runners (offline)."""
    if algo.env_runner is not None:
        return algo.get_module().policy
    return algo.learner_group._learner.module[DEFAULT_MODULE_ID].policy


def _evaluate(evaluator: Evaluator, algo, tracker: Tracker, run_dir: Path, step: int) -> dict:
    summary, records = evaluator(policy_of(algo))
    record = {"iteration": step, **{f"eval/{k}": v for k, v in summary.items()}}
    with open(run_dir / "eval.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    tracker.log(record, step=step)
    tracker.log_samples([(r["prompt"], r["completion"], r["score"]) for r in records[:8]], step)
    return record


def save_checkpoint(algo, controller, iteration: int, run_dir: Path, config: TrainConfig) -> Path:
    """RLlib state + driver state + exported policy, written atomically (rename at the end)."""
    final = run_dir / CHECKPOINTS / f"iter_{iteration:06d}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    algo.save_to_path(str((partial / "algorithm").resolve()))
    export_policy(algo, partial / POLICY, config)
    (partial / DRIVER_STATE).write_text(json.dumps(
        {"iteration": iteration, "kl_controller": controller.state_dict()}))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    if config.run.keep_checkpoints > 0:
        for old in _checkpoints(run_dir)[: -config.run.keep_checkpoints]:
            shutil.rmtree(old)
    return final


def export_policy(algo, folder: Path, config: TrainConfig) -> None:
    """The trained policy as a ``transformers`` folder (safetensors) with its tokenizer."""
    from rlhf_env.models import load_tokenizer

    policy_of(algo).save_pretrained(folder, safe_serialization=True)
    load_tokenizer(config.task.model).save_pretrained(folder)


def _checkpoints(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    return sorted(p for p in (run_dir / CHECKPOINTS).glob("iter_*")
                  if not p.name.endswith(".partial") and (p / DRIVER_STATE).exists())


def latest_checkpoint(run_dir: Path) -> Path | None:
    complete = _checkpoints(run_dir)
    return complete[-1] if complete else None

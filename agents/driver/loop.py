"""The training loop: RLlib iterations of any registered algorithm, with KL control, evaluation,
tracking and checkpoints.

Each iteration, in order:
1. the algorithm's ``before_iteration`` hook (online: push β from the KL controller and the
   iteration number to every env runner);
2. ``algo.train()``: sample, update the learners, sync weights (the algorithm's training step);
3. update the KL controller from the measured KL per token (docs/formulation.md eqs. 16-17);
4. log the metrics and, every few iterations, sample generations;
5. evaluate on held-out prompts and checkpoint, every few iterations and at the end.

A run folder holds ``config.yaml``, ``metrics.jsonl``, ``eval.jsonl``, the checkpoints
(:mod:`agents.driver.checkpoints`) and the W&B files. Restarting the same command resumes from
the last checkpoint: sampling seeds derive from the iteration and the learner's minibatch order
is in its state, so the resumed run continues as the uninterrupted one would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from agents.core import metric_names as M
from agents.core.algorithm import threads_per_process
from agents.core.assets import serve_assets
from agents.core.config import TrainConfig
from agents.core.errors import GuardStop, TrainingInterrupted
from agents.core.guard import Guard
from agents.core.registry import get_algorithm
from agents.core.tracking import Tracker
from agents.driver.checkpoints import (
    CHECKPOINTS,
    checkpoint_name,
    latest_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from agents.driver.evaluation import Evaluator
from agents.driver.results import iteration_record
from agents.driver.weights import current_policy

PROGRESS_KEYS = (M.SCORE, M.KL, M.DPO_ACCURACY, M.DPO_LOSS)


def init_ray(num_cpus: int) -> None:
    """Local Ray by default; an existing cluster when ``RAY_ADDRESS`` is set (no code change)."""
    import ray
    from ray.tune.trainable import trainable

    from rlhf_env.data.assets import cache_dir

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
        ray.init(
            num_cpus=max(num_cpus, os.cpu_count() or 1),
            include_dashboard=False,
            log_to_driver=False,
        )


def train(config: TrainConfig, *, progress: bool = True) -> list[dict]:
    """Train ``config.algorithm`` as configured; return this call's per-iteration records."""
    algorithm = get_algorithm(config.algorithm)
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.as_dict(), sort_keys=False))
    torch.set_num_threads(threads_per_process(config))
    algorithm.prepare(config)
    init_ray(1 + config.scale.num_env_runners + config.scale.num_learners)
    asset_server = serve_assets()  # nodes without a shared filesystem receive models and data
    algo = algorithm.rllib_config(config).build_algo()
    controller = config.kl.build(config.initial_kl_coef)
    guard = Guard(config.guard)
    checkpoint = latest_checkpoint(run_dir) if config.run.resume else None
    start = 0
    if checkpoint:
        state = restore_checkpoint(algo, checkpoint)
        controller.load_state_dict(state["kl_controller"])
        guard.load_state_dict(state["guard"])
        start = state["iteration"]
    for log in (M.METRICS_FILE, M.EVAL_FILE):  # drop what ran after the checkpoint
        _truncate_log(run_dir / log, start)
    tracker = Tracker(
        config.run.wandb, config.run.wandb_project, config.run.name, run_dir, config.as_dict()
    )
    evaluator = Evaluator(config, algorithm.extra_evaluation(config))
    if start == 0:
        _evaluate(evaluator, current_policy(algo), tracker, run_dir, step=0)

    records = []
    bar = tqdm(
        range(start, config.run.iterations),
        desc=config.algorithm,
        disable=not progress,
        initial=start,
        total=config.run.iterations,
    )
    for iteration in bar:
        step = iteration + 1
        algorithm.before_iteration(algo, config, controller.beta, iteration)
        record = {"iteration": step, **iteration_record(_train_step(algo, run_dir, step))}
        if M.KL in record:  # the environments measured the KL of the sampled episodes
            record[M.KL_COEF] = controller.beta
            controller.update(record[M.KL], n_steps=max(1, int(record[M.TOKENS])))
        stop = _act_on_guard(guard, record, algo, controller, tracker, run_dir)
        records.append(record)
        with open(run_dir / M.METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        tracker.log(record, step=step)
        if _due(step, config.run.samples_every, config.run.iterations):
            tracker.log_samples(_pop_samples(algo), step=step)
        if _due(step, config.run.eval_every, config.run.iterations):
            _evaluate(evaluator, current_policy(algo), tracker, run_dir, step)
        if _due(step, config.run.checkpoint_every, config.run.iterations):
            guard.saved(checkpoint_name(step))
            save_checkpoint(
                algo,
                step,
                run_dir,
                driver_state={
                    "kl_controller": controller.state_dict(),
                    "guard": guard.state_dict(),
                },
                model_spec=config.model,
                keep=config.run.keep_checkpoints,
                protect=guard.good,
            )
        bar.set_postfix(
            {key.split("/")[-1]: f"{record[key]:+.4f}" for key in PROGRESS_KEYS if key in record}
        )
        if stop:
            tracker.finish()
            algo.stop()
            raise GuardStop(stop)
    tracker.finish()
    algo.stop()
    del asset_server  # held until here: the workers are gone
    return records


def _act_on_guard(
    guard: Guard, record: dict, algo, controller, tracker: Tracker, run_dir: Path
) -> str | None:
    """Apply the guard's decisions on this iteration (docs: agents/core/guard.py): raise β, roll
    the policy back to the last good checkpoint, or stop; one console line and one W&B alert per
    event. Returns the reason to stop, if any."""
    stop = None
    for happened, action in guard.check(record, record.get(M.ENTROPY)):
        before = controller.beta
        if action in ("raise_beta", "rollback"):
            controller.beta = guard.raised(before)
            done = f"raised β from {before:.4g} to {controller.beta:.4g}"
            if action == "rollback":
                restore_checkpoint(algo, run_dir / CHECKPOINTS / guard.good)
                done = f"rolled the policy back to {guard.good} and {done}"
        elif action == "stop":
            done = "stopped the run"
            stop = f"iteration {record['iteration']}: {happened}; {done}"
        else:
            done = "no action"
        message = f"iteration {record['iteration']}: {happened}; {done}"
        tqdm.write(f"[guard] {message}")
        tracker.alert("rlhf-env guard", message)
    return stop


def _train_step(algo, run_dir: Path, step: int) -> dict:
    """``algo.train()``; a failed learner (killed, or its data-parallel peer lost) stops the run
    with one line saying how to resume, the traceback in ``interrupted.log`` (RLlib restarts
    failed env runners itself)."""
    import traceback

    from ray.exceptions import RayError

    try:
        return algo.train()
    except RayError as error:
        log = run_dir / "interrupted.log"
        log.write_text("".join(traceback.format_exception(error)))
        last = latest_checkpoint(run_dir)
        resume = (
            f"re-run the same command to resume from {last}"
            if last
            else "no checkpoint was saved yet: re-running the command starts again"
        )
        cause = str(error).strip().splitlines()[-1][:200].rstrip(".")
        raise TrainingInterrupted(
            f"a Ray worker failed during iteration {step} ({type(error).__name__}: {cause}; "
            f"details in {log}). Iterations up to the last checkpoint are saved; {resume}"
        ) from error


def _truncate_log(path: Path, iteration: int) -> None:
    """Keep the JSON-lines records of iterations up to ``iteration`` (resume after a crash)."""
    if path.exists():
        kept = [
            line
            for line in path.read_text().splitlines()
            if json.loads(line)["iteration"] <= iteration
        ]
        path.write_text("".join(line + "\n" for line in kept))


def _pop_samples(algo) -> list[tuple[str, str, float]]:
    """Recent (prompt, completion, score) triples of the env runners (none offline)."""
    if algo.env_runner_group is None:
        return []
    results = algo.env_runner_group.foreach_env_runner(
        lambda runner: runner.pop_samples() if runner.env is not None else [],
        local_env_runner=True,
    )
    return [sample for samples in results for sample in samples]


def _due(step: int, every: int, total: int) -> bool:
    return step == total or (every > 0 and step % every == 0)


def _evaluate(evaluator: Evaluator, policy, tracker: Tracker, run_dir: Path, step: int) -> dict:
    summary, records = evaluator(policy, step)
    record = {"iteration": step, **{M.EVAL_PREFIX + k: v for k, v in summary.items()}}
    with open(run_dir / M.EVAL_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")
    tracker.log(record, step=step)
    tracker.log_samples([(r["prompt"], r["completion"], r["score"]) for r in records[:8]], step)
    return record

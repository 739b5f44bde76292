"""A real two-node Ray cluster (separate raylets): the CLI reaches it through RAY_ADDRESS alone,
with 2 env runners and 2 learners on a node whose cache is empty (no shared filesystem for the
offline defaults), and survives a dead remote env runner; a dead learner stops the run with one
clear line, and the same command resumes it with nothing finished lost."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

CLI = [str(Path(sys.executable).parent / "rlhf-env"), "train"]
# TextGen-v0 on the movie-review prompts (an offline default the worker node lacks), the tiny
# model, 2 env runners and 2 learners.
PRESET = """
algorithm: ppo
task:
  id: rlhf_env/TextGen-v0
  overrides: {prompts: movie-reviews, model: tiny, reward: vader, max_new_tokens: 4,
              max_prompt_tokens: 32}
ppo: {episodes_per_iteration: 8, epochs: 1, minibatch_episodes: 4, lr: 1.0e-3}
scale: {num_env_runners: 2, num_envs_per_env_runner: 4, num_learners: 2, threads_per_worker: 1}
run: {iterations: 2, checkpoint_every: 2, eval_every: 0, eval_episodes: 4, wandb: disabled}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node with no CPUs (the driver's) and a worker node with 4 CPUs and an empty
    cache: every env runner and learner runs on the worker node."""
    from ray.cluster_utils import Cluster

    empty_cache = tmp_path_factory.mktemp("worker-cache")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=4, env_vars={"RLHF_ENV_CACHE": str(empty_cache)})
    preset = tmp_path_factory.mktemp("preset") / "cluster.yaml"
    preset.write_text(PRESET)
    yield cluster, empty_cache, preset
    cluster.shutdown()


def train(cluster, preset, run_dir, *overrides, wait=True):
    """The CLI pointed at the cluster with RAY_ADDRESS and nothing else."""
    env = dict(os.environ, RAY_ADDRESS=cluster.address)
    cmd = [
        *CLI,
        str(preset),
        f"run.output_dir={run_dir.parent}",
        f"run.name={run_dir.name}",
        *overrides,
    ]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def iterations(run_dir) -> list[int]:
    path = run_dir / "metrics.jsonl"
    return (
        [json.loads(line)["iteration"] for line in path.read_text().splitlines()]
        if path.exists()
        else []
    )


def worker_processes(title: str, cache) -> list[psutil.Process]:
    """Processes of the worker node (their environment names its cache) with this Ray title."""
    found = []
    for process in psutil.process_iter():
        try:
            if (
                process.cmdline()[:1]
                and process.cmdline()[0].startswith(title)
                and process.environ().get("RLHF_ENV_CACHE") == str(cache)
            ):
                found.append(process)
        except psutil.Error:
            continue
    return found


def wait_for(condition, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_cli_trains_on_a_two_node_cluster_without_a_shared_cache(cluster, tmp_path):
    cluster, cache, preset = cluster
    run_dir = tmp_path / "two_nodes"
    result = train(cluster, preset, run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "iteration 2: score" in result.stdout
    assert (run_dir / "checkpoints" / "iter_000002" / "policy" / "model.safetensors").exists()
    # the worker node's empty cache received the prompts from the driver, whole
    assert (cache / "data" / "movie-reviews.csv").is_file()
    assert (cache / "data" / "movie-reviews.csv.complete").is_file()


def test_a_killed_remote_env_runner_is_restarted_and_training_goes_on(cluster, tmp_path):
    cluster, cache, preset = cluster
    run_dir = tmp_path / "runner_killed"
    run = train(cluster, preset, run_dir, "run.iterations=30", wait=False)
    wait_for(lambda: len(iterations(run_dir)) >= 2)
    runners = worker_processes("ray::LLMEnvRunner", cache)
    assert len(runners) == 2
    runners[0].send_signal(signal.SIGKILL)
    _, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-3000:]
    assert iterations(run_dir) == list(range(1, 31))


def test_a_killed_learner_stops_cleanly_and_the_same_command_resumes(cluster, tmp_path):
    cluster, cache, preset = cluster
    run_dir = tmp_path / "learner_killed"
    overrides = ("run.iterations=40", "run.checkpoint_every=2")
    run = train(cluster, preset, run_dir, *overrides, wait=False)
    wait_for(lambda: len(iterations(run_dir)) >= 3)
    learners = worker_processes("ray::_WrappedExecutable", cache)  # RLlib's learner actors
    assert len(learners) == 2
    learners[0].send_signal(signal.SIGKILL)
    _, err = run.communicate(timeout=600)
    assert run.returncode == 1
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, err[-3000:]  # one line, no traceback
    (message,) = errors
    assert message.startswith("Error: TrainingInterrupted: a Ray worker failed during iteration")
    assert "re-run the same command to resume from" in message
    resumed = train(cluster, preset, run_dir, *overrides)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert iterations(run_dir) == list(range(1, 41))  # each once: nothing finished is lost

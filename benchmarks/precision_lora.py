"""Benchmark: PPO iterations in bf16 against float32, and an env runner's and a learner's memory
with LoRA against full fine-tuning, on the same model, task and batch.

What it shows (each side in its own freshly spawned process, both sides in one run)
- Seconds per PPO iteration (``algo.train()``: sampling with the KV-cached policy and the
  environment's reference, then the learner's epochs) with ``precision: fp32`` and
  ``precision: bf16`` (learner in bf16 autocast, sampler and reference in bf16 weights), the
  ratio fp32/bf16 (target >= 1.5), and the mean |log π_learner − log π_sampler| of each
  (``rollout/logprob_abs_diff``: what bf16 costs in agreement). The held-out learning of bf16 is
  shown by the test suite's tiny bf16 run and by a real run (docs/experiments.md).
- Peak resident memory of an env runner sampling one round and of a learner doing one update,
  with ``lora.r=16`` and with full fine-tuning, and their ratios (target for the env runner:
  <= 0.6, its environment's reference being the policy's own base with the adapters off).

How to run (needs `rlhf-env prepare`)
    python benchmarks/precision_lora.py                  # SmolLM2-135M
    python benchmarks/precision_lora.py --model tiny     # seconds
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import build_benchmark_algo, gib, in_fresh_process


def iteration_seconds(args, precision: str) -> dict:
    from agents.driver.results import iteration_record

    torch.set_num_threads(args.threads)
    _, algo = build_benchmark_algo(
        args.model,
        args.max_new_tokens,
        args.episodes,
        f"precision={precision}",
        "ppo.epochs=2",
        f"ppo.minibatch_episodes={args.episodes // 2}",
    )
    algo.train()  # warm-up: first batch shapes, optimizer state
    start = time.perf_counter()
    diffs = [
        iteration_record(algo.train())["rollout/logprob_abs_diff"] for _ in range(args.iterations)
    ]
    elapsed = (time.perf_counter() - start) / args.iterations
    algo.stop()
    return {"seconds": elapsed, "logprob_abs_diff": sum(diffs) / len(diffs)}


def actor_peaks(args, lora: int) -> dict:
    """Peak RSS of a remote env runner after sampling one round and of a remote learner after
    one update on those episodes, each its own process."""
    from agents.core.training_step import training_units, update_learners

    def peak_rss(_=None) -> int:
        """The calling process's peak resident memory in bytes. Defined here, not at module
        level, so that Ray ships it by value: the actors cannot import this script."""
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    _, algo = build_benchmark_algo(
        args.model,
        args.max_new_tokens,
        args.episodes,
        f"lora.r={lora}",
        "scale.num_env_runners=1",
        "scale.num_learners=1",
        "scale.threads_per_worker=1",
    )
    episodes, runner = algo.env_runner_group.foreach_env_runner(
        lambda r: (r.sample(), peak_rss()), local_env_runner=False
    )[0]
    update_learners(algo.learner_group, training_units(episodes, 1))
    learner = next(iter(algo.learner_group.foreach_learner(peak_rss))).get()
    algo.stop()
    return {"env runner": runner, "learner": learner}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    fp32, bf16 = (in_fresh_process(iteration_seconds, args, p) for p in ("fp32", "bf16"))
    for name, result in (("fp32", fp32), ("bf16", bf16)):
        print(
            f"PPO iteration {name}: {result['seconds']:.1f} s, sampler-learner mean |Δ log π| "
            f"{result['logprob_abs_diff']:.2e}, peak RSS {gib(result['peak_rss'])}"
        )
    print(
        f"RESULT fp32/bf16 seconds per PPO iteration = {fp32['seconds'] / bf16['seconds']:.3f}"
        " (target >= 1.5)"
    )
    full, lora = (in_fresh_process(actor_peaks, args, r) for r in (0, 16))
    for name in ("env runner", "learner"):
        print(f"{name}: peak RSS full {gib(full[name])}, LoRA r=16 {gib(lora[name])}")
        target = " (target <= 0.6)" if name == "env runner" else ""
        print(f"RESULT {name} LoRA/full peak RSS = {lora[name] / full[name]:.3f}{target}")

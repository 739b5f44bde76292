"""Benchmark: how sampling and learning scale with env runners and data-parallel learners.

What it shows
- Sampling tokens/s of ``num_env_runners`` = 1, 2, ... remote env runners, each stepping
  ``--num-envs`` environments of the tiny-wide model (reference model, KL and reward per token)
  with one torch thread, through the training step's episode-exact sampling
  (:func:`agents.core.training_step.sample_episodes`), and each count's ratio to one runner.
- Tokens/s of one learner update (PPO, ``--epochs`` over the same episodes) with
  ``num_learners`` = 1, 2, ... remote learners (gradients averaged by DDP, gloo on CPU), and
  each count's ratio to one learner.
All counts run in one invocation, one after the other, on the same episodes per update.

How to run
    python benchmarks/scaling.py                               # 1 vs 2 (a 2-core machine)
    python benchmarks/scaling.py --runners 1 2 4 8 --learners 1 2 4   # a bigger cluster
    RAY_ADDRESS=head:6379 python benchmarks/scaling.py --runners 1 4 16

Results to expect on a 2-core machine: 2 runners >= 1.6x the sampling rate of one (two
processes is the ceiling there); learners gain less on a model this small (the gradient
all-reduce is a large share of its update).
"""

from __future__ import annotations

import argparse
import time

from common import build_benchmark_algo


def sampling_tokens_per_s(args, runners: int) -> float:
    from agents.core.training_step import sample_episodes

    _, algo = build_benchmark_algo(
        args.model,
        args.max_new_tokens,
        args.num_envs,
        f"scale.num_env_runners={runners}",
        "scale.threads_per_worker=1",
    )
    group, episodes = algo.env_runner_group, runners * args.num_envs

    def sample():
        return sample_episodes(group, episodes, per_call=args.num_envs)[0]

    sample()  # warm-up: every runner's first batch and KV cache
    start = time.perf_counter()
    tokens = sum(len(e) for _ in range(args.rounds) for e in sample())
    elapsed = time.perf_counter() - start
    algo.stop()
    return tokens / elapsed


def update_tokens_per_s(args, learners: int, episodes: list) -> float:
    from agents.core.training_step import training_units, update_learners

    _, algo = build_benchmark_algo(
        args.model,
        args.max_new_tokens,
        len(episodes),
        f"scale.num_learners={learners}",
        f"ppo.epochs={args.epochs}",
        "scale.threads_per_worker=1",
    )
    units = training_units(episodes, 1)
    update_learners(algo.learner_group, units)  # warm-up: optimizer state, process group
    start = time.perf_counter()
    for _ in range(args.rounds):
        update_learners(algo.learner_group, units)
    elapsed = time.perf_counter() - start
    algo.stop()
    return args.rounds * args.epochs * sum(len(e) for e in episodes) / elapsed


def fixed_episodes(args) -> list:
    """One batch of episodes every learner count updates on."""
    _, algo = build_benchmark_algo(args.model, args.max_new_tokens, args.update_episodes)
    episodes = algo.env_runner_group.local_env_runner.sample()
    algo.stop()
    return episodes


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-wide")
    parser.add_argument("--num-envs", type=int, default=64, help="Environments per runner.")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4, help="Timed rounds per count.")
    parser.add_argument("--runners", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--learners", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--update-episodes", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    sampling = {n: sampling_tokens_per_s(args, n) for n in args.runners}
    episodes = fixed_episodes(args)
    updates = {n: update_tokens_per_s(args, n, episodes) for n in args.learners}
    for n, rate in sampling.items():
        print(f"{n} env runner(s): sampling {rate:8.1f} tokens/s")
    for n, rate in updates.items():
        print(f"{n} learner(s):    update   {rate:8.1f} tokens/s")
    base_runners, base_learners = sampling[args.runners[0]], updates[args.learners[0]]
    for n in args.runners[1:]:
        print(
            f"RESULT sampling {n}/{args.runners[0]} env runners = {sampling[n] / base_runners:.2f}"
            + (" (target >= 1.6)" if (n, args.runners[0]) == (2, 1) else "")
        )
    for n in args.learners[1:]:
        print(f"RESULT update {n}/{args.learners[0]} learners = {updates[n] / base_learners:.2f}")

"""Benchmark: env-runner sampling throughput against plain `generate`, same model and batch.

What it shows
- Tokens/s of ``LLMEnvRunner.sample()``: the RLlib env runner stepping the batched environment
  (reference model on, KL and reward per token) with the KV-cached policy sampler, building
  RLlib episodes with the sampling log-probs.
- Tokens/s of ``transformers`` ``generate`` (sampling, the same number of new tokens) for the
  same model and batch, in the same run; and the ratio (target >= 0.45: the runner runs two
  models per token, policy and reference, ``generate`` one).

How to run
    python benchmarks/rollout.py                 # SmolLM2-135M (needs `rlhf-env prepare`)
    python benchmarks/rollout.py --model tiny
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import build_benchmark_algo, generate_tokens_per_second

from rlhf_env.data.models import load_tokenizer

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, algo = build_benchmark_algo(args.model, args.max_new_tokens, args.batch)
    runner = algo.env_runner_group.local_env_runner
    runner.sample()  # warm-up
    start = time.perf_counter()
    episodes = runner.sample()
    elapsed = time.perf_counter() - start
    runner_tps = sum(len(e) for e in episodes) / elapsed
    prompts = [runner.env.unwrapped.batch.episodes[i].prompt for i in range(args.batch)]
    generate_tps = generate_tokens_per_second(
        runner.module.policy, load_tokenizer(args.model), prompts, args.max_new_tokens
    )
    print(f"env runner sample (policy + env with reference): {runner_tps:8.1f} tokens/s")
    print(f"transformers generate:                           {generate_tps:8.1f} tokens/s")
    print(
        f"RESULT runner/generate sampling tokens/s ratio = {runner_tps / generate_tps:.3f} "
        f"(target >= 0.45)"
    )
    algo.stop()

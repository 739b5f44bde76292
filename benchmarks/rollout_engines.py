"""Benchmark: env-runner sampling throughput with the vLLM engine against the hf engine.

What it shows
- Tokens/s of ``LLMEnvRunner.sample()`` with ``engine: hf`` (KV-cached ``transformers``
  sampler) and with ``engine: vllm`` (in-process vLLM generating every environment's response in
  one batched call), on the same model, task, batch and reward, in the same run. Both step the
  batched environment with its reference model (KL per token) and build RLlib episodes with the
  sampling log-probs. Each engine is warmed up with one ``sample()`` first (vLLM's engine start
  and first batch shape are slow once).
- The ratio vllm / hf.

How to run (needs the vllm extra and `rlhf-env prepare`)
    python benchmarks/rollout_engines.py
    python benchmarks/rollout_engines.py --model tiny-wide --batch 16
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from common import build_benchmark_algo


def sampling_tokens_per_second(model: str, engine: str, args) -> float:
    _, algo = build_benchmark_algo(model, args.max_new_tokens, args.batch, f"engine={engine}")
    runner = algo.env_runner_group.local_env_runner
    runner.sample()  # warm-up
    tokens, start = 0, time.perf_counter()
    for _ in range(args.rounds):
        tokens += sum(len(e) for e in runner.sample())
    elapsed = time.perf_counter() - start
    algo.stop()
    return tokens / elapsed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf = sampling_tokens_per_second(args.model, "hf", args)
    vllm = sampling_tokens_per_second(args.model, "vllm", args)
    print(f"env runner sample, engine hf:   {hf:8.1f} tokens/s")
    print(f"env runner sample, engine vllm: {vllm:8.1f} tokens/s")
    print(f"RESULT vllm/hf env-runner sampling tokens/s ratio = {vllm / hf:.3f}")

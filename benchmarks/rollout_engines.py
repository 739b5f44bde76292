"""Benchmark: env-runner sampling throughput with the vLLM engine against the hf engine.

What it shows
- Tokens/s of ``LLMEnvRunner.sample()`` with ``engine: hf`` (KV-cached ``transformers``
  sampler) and with ``engine: vllm`` (in-process vLLM generating every environment's response in
  one batched call), on the same model, task, batch and reward, in the same run. Both step the
  batched environment with its reference model (KL per token) and build RLlib episodes with the
  sampling log-probs. Each engine is warmed up with one ``sample()`` first (vLLM's engine start
  and first batch shape are slow once).
- The ratio vllm / hf, and the peak resident memory of each (each engine runs in its own freshly
  spawned process; vLLM's KV cache is bounded by the engine's ``kv_cache_memory_bytes``).

How to run (needs the vllm extra and `rlhf-env prepare`)
    python benchmarks/rollout_engines.py
    python benchmarks/rollout_engines.py --model tiny-wide --batch 16
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import build_benchmark_algo, gib, in_fresh_process


def sampling_tokens_per_second(model: str, engine: str, args) -> dict:
    torch.set_num_threads(args.threads)
    _, algo = build_benchmark_algo(model, args.max_new_tokens, args.batch, f"engine={engine}")
    runner = algo.env_runner_group.local_env_runner
    runner.sample()  # warm-up
    tokens, start = 0, time.perf_counter()
    for _ in range(args.rounds):
        tokens += sum(len(e) for e in runner.sample())
    elapsed = time.perf_counter() - start
    algo.stop()
    return {"tokens_per_s": tokens / elapsed}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    hf, vllm = (
        in_fresh_process(sampling_tokens_per_second, args.model, engine, args)
        for engine in ("hf", "vllm")
    )
    for name, result in (("hf", hf), ("vllm", vllm)):
        print(
            f"env runner sample, engine {name:4}: {result['tokens_per_s']:8.1f} tokens/s, "
            f"peak RSS {gib(result['peak_rss'])}"
        )
    print(
        f"RESULT vllm/hf env-runner sampling tokens/s ratio = "
        f"{vllm['tokens_per_s'] / hf['tokens_per_s']:.3f}"
    )
    print(f"RESULT vllm/hf peak RSS ratio = {vllm['peak_rss'] / hf['peak_rss']:.3f}")

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

from agents.config import load_config
from agents.ppo.algorithm import build_ppo_config
from agents.train import init_ray
from rlhf_env.models import load_tokenizer


@torch.inference_mode()
def generate_tokens_per_second(model, tokenizer, prompts, new_tokens: int) -> float:
    tokenizer.padding_side = "left"
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = dict(do_sample=True, top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id)
    model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, **kwargs)  # warm-up
    start = time.perf_counter()
    out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
    elapsed = time.perf_counter() - start
    return (out.shape[1] - inputs["input_ids"].shape[1]) * len(prompts) / elapsed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = "rlhf_env/Tiny-v0" if args.model == "tiny" else "rlhf_env/Sentiment-v0"
    config = load_config(None, [
        f"task.id={task}", f"task.model={args.model}", f"task.max_new_tokens={args.max_new_tokens}",
        f"scale.num_envs_per_env_runner={args.batch}", "run.wandb=disabled",
    ])
    init_ray(1)
    algo = build_ppo_config(config).build_algo()
    runner = algo.env_runner_group.local_env_runner
    runner.sample()  # warm-up
    start = time.perf_counter()
    episodes = runner.sample()
    elapsed = time.perf_counter() - start
    runner_tps = sum(len(e) for e in episodes) / elapsed
    prompts = [runner.env.unwrapped.batch.episodes[i].prompt for i in range(args.batch)]
    generate_tps = generate_tokens_per_second(runner.module.policy, load_tokenizer(args.model),
                                              prompts, args.max_new_tokens)
    print(f"env runner sample (policy + env with reference): {runner_tps:8.1f} tokens/s")
    print(f"transformers generate:                           {generate_tps:8.1f} tokens/s")
    print(f"RESULT runner/generate sampling tokens/s ratio = {runner_tps / generate_tps:.3f} "
          f"(target >= 0.45)")
    algo.stop()

"""Benchmark: the batched environment's step cost against prefix length and against `generate`.

What it shows
- Steps per second of the batched environment (reference model on, KV-cached) at prefix length
  16 and 256, and their ratio: a flat cost per step gives a ratio near 1 (target <= 1.5).
- Steps per second at prefix 16 without a reference model (``reference=False``, β = 0: what
  GRPO/PPO with the KL term off get), against the same with the reference: the reference forward
  is most of a step, so the ratio is well above 1.
- Tokens per second of a full rollout (KV-cached policy sampler + environment with its reference
  model) relative to plain ``transformers`` ``generate`` of the same model, batch, prompts and
  length, measured in this run (target >= 0.45: the rollout runs two models, generate one).

How to run
    python benchmarks/env_step.py                 # SmolLM2-135M (needs `rlhf-env prepare`)
    python benchmarks/env_step.py --model tiny    # seconds, on the tiny random model

It prints one line per measurement and a final line with both ratios.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np
import torch
from common import generate_tokens_per_second

import rlhf_env  # noqa: F401
from rlhf_env import TokenAction
from rlhf_env.data.models import load_causal_lm, load_tokenizer
from rlhf_env.policy.sampler import LMSampler


def make_envs(model, tokenizer, batch: int, max_new_tokens: int, max_prompt_tokens: int, **task):
    return gym.make_vec(
        "rlhf_env/TextGen-v0",
        num_envs=batch,
        vectorization_mode="vector_entry_point",
        prompts=["placeholder"],
        model=model,
        tokenizer=tokenizer,
        reward="vader",
        max_new_tokens=max_new_tokens,
        max_prompt_tokens=max_prompt_tokens,
        **task,
    )


def prompt_of_length(tokenizer, length: int) -> str:
    """A prompt that encodes to exactly ``length`` tokens."""
    ids = tokenizer(" the movie was good and" * length, add_special_tokens=False)["input_ids"]
    text = tokenizer.decode(ids[:length])
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) == length
    return text


def env_steps_per_second(model, tokenizer, prefix: int, batch: int, steps: int, **task) -> float:
    """Environment-only steps/s (reference forward + bookkeeping) with random supplied actions."""
    envs = make_envs(
        model, tokenizer, batch, max_new_tokens=steps + 8, max_prompt_tokens=prefix, **task
    )
    envs.reset(seed=0, options={"prompts": [prompt_of_length(tokenizer, prefix)] * batch})
    rng = np.random.default_rng(0)
    low = len(tokenizer.all_special_ids) + 8  # skip special tokens so no episode ends early

    def step():
        tokens = rng.integers(low, envs.single_action_space.n, batch)
        envs.step(TokenAction.batch(tokens.tolist(), [-5.0] * batch))

    for _ in range(4):  # warm-up
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def rollout_tokens_per_second(model, tokenizer, prompts, batch: int, new_tokens: int) -> float:
    envs = make_envs(model, tokenizer, batch, max_new_tokens=new_tokens, max_prompt_tokens=64)
    sampler = LMSampler(model, batch, seed=0)
    obs, _ = envs.reset(seed=0, options={"prompts": prompts})
    for _ in range(2):  # warm-up
        obs, *_ = envs.step(sampler.act(obs))
    start = time.perf_counter()  # timed like generate: prompt prefill included
    obs, _ = envs.reset(seed=0, options={"prompts": prompts})
    for _ in range(new_tokens):
        obs, *_ = envs.step(sampler.act(obs))
    return batch * new_tokens / (time.perf_counter() - start)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = load_causal_lm(args.model)
    tokenizer = load_tokenizer(args.model)
    sps = {p: env_steps_per_second(model, tokenizer, p, args.batch, args.steps) for p in (16, 256)}
    for prefix, value in sps.items():
        print(f"env steps/s at prefix {prefix:3d}: {value:8.2f}  (batch {args.batch})")
    bare = env_steps_per_second(
        model, tokenizer, 16, args.batch, args.steps, reference=False, kl_coef=0.0
    )
    print(f"env steps/s at prefix  16 without a reference: {bare:8.2f}")
    prompts = (
        ["this movie was", "the acting is", "i think the film", "the music was really"] * args.batch
    )[: args.batch]
    rollout = rollout_tokens_per_second(model, tokenizer, prompts, args.batch, args.new_tokens)
    generate = generate_tokens_per_second(model, tokenizer, prompts, args.new_tokens)
    print(f"rollout (policy sampler + env with reference) tokens/s: {rollout:8.1f}")
    print(f"transformers generate tokens/s:                         {generate:8.1f}")
    print(
        f"RESULT prefix16/prefix256 step-rate ratio = {sps[16] / sps[256]:.3f} (target <= 1.5); "
        f"rollout/generate tokens/s ratio = {rollout / generate:.3f} (target >= 0.45); "
        f"no-reference/reference step-rate ratio = {bare / sps[16]:.2f}"
    )

"""Pieces shared by the benchmark scripts: the `generate` baseline and a PPO algo to measure."""

from __future__ import annotations

import time

import torch


@torch.inference_mode()
def generate_tokens_per_second(model, tokenizer, prompts: list[str], new_tokens: int) -> float:
    """Plain ``transformers`` sampling of exactly ``new_tokens`` per prompt, prefill included."""
    tokenizer.padding_side = "left"
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                  pad_token_id=tokenizer.pad_token_id)
    model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, **kwargs)  # warm-up
    start = time.perf_counter()
    out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
    elapsed = time.perf_counter() - start
    return (out.shape[1] - inputs["input_ids"].shape[1]) * len(prompts) / elapsed


def build_benchmark_algo(model: str, max_new_tokens: int, num_envs: int, *overrides: str):
    """RLlib PPO on Sentiment-v0 (or Tiny-v0 for the tiny models), sampling in process."""
    from agents.config import load_config
    from agents.ppo.algorithm import build_ppo_config
    from agents.train import init_ray

    task = "rlhf_env/Tiny-v0" if model.startswith("tiny") else "rlhf_env/Sentiment-v0"
    config = load_config(None, [
        f"task.id={task}", f"task.model={model}", f"task.max_new_tokens={max_new_tokens}",
        f"scale.num_envs_per_env_runner={num_envs}", "run.wandb=disabled", *overrides,
    ])
    init_ray(1)
    return config, build_ppo_config(config).build_algo()

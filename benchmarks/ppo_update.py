"""Benchmark: RLlib learner update throughput against a bare PyTorch PPO step, same model and batch.

What it shows
- One PPO update through RLlib (our learner connector: rows, values, GAE; our learner: epochs
  over row minibatches, the PPO losses of docs/formulation.md, gradient clipping, Adam) in tokens/s.
- The same update written as a bare PyTorch loop (one forward per episode row, the same losses,
  epochs, minibatches and optimizer) on a copy of the same weights, in tokens/s.
- Their ratio, measured in one run (target >= 0.8: the RLlib machinery costs at most 20%).

How to run
    python benchmarks/ppo_update.py                  # SmolLM2-135M (needs `rlhf-env prepare`)
    python benchmarks/ppo_update.py --model tiny     # seconds

Both sides update from the same sampled episodes; throughput counts response tokens x epochs.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch
from common import build_benchmark_algo
from ray.rllib.core.columns import Columns

from agents.core.columns import ATTENTION_MASK, INPUT_IDS, PROMPT_WIDTH
from agents.core.episode_rows import episode_rows


def bare_pytorch_update(
    policy,
    value_head,
    rows,
    epochs,
    minibatch,
    lr,
    gamma=1.0,
    lam=0.95,
    clip=0.2,
    vf_coef=0.1,
    value_clip=0.2,
    max_norm=1.0,
) -> float:
    """A plain PPO update on padded episode rows; returns its wall time in seconds."""
    params = list(policy.parameters()) + list(value_head.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    start = time.perf_counter()
    width = int(rows[PROMPT_WIDTH][0])
    mask = rows[Columns.LOSS_MASK]

    def forward(index):
        attention = rows[ATTENTION_MASK][index]
        hidden = policy.base_model(
            input_ids=rows[INPUT_IDS][index],
            attention_mask=attention,
            position_ids=(attention.cumsum(-1) - 1).clamp(min=0),
        ).last_hidden_state
        states = hidden[:, width - 1 : -1]
        return policy.lm_head(states), value_head(states).squeeze(-1)

    with torch.no_grad():  # V_old, then GAE over the padded rewards (no bootstrap at the end)
        _, old_values = forward(torch.arange(len(mask)))
        old_values = old_values * mask
        advantages = torch.zeros_like(old_values)
        last = torch.zeros(len(mask))
        for t in reversed(range(mask.shape[1])):
            next_value = old_values[:, t + 1] if t + 1 < mask.shape[1] else 0.0
            delta = rows[Columns.REWARDS][:, t] + gamma * next_value - old_values[:, t]
            last = (delta + gamma * lam * last) * mask[:, t]
            advantages[:, t] = last
        returns = advantages + old_values
        real = advantages[mask]
        advantages = (advantages - real.mean()) / (real.std() + 1e-8) * mask
    for _ in range(epochs):
        order = torch.randperm(len(mask))
        for chunk in order.split(minibatch):
            logits, values = forward(chunk)
            logp = torch.log_softmax(logits, -1).gather(-1, rows[Columns.ACTIONS][chunk, :, None])[
                ..., 0
            ]
            m = mask[chunk]
            ratio = torch.exp(logp - rows[Columns.ACTION_LOGP][chunk])
            adv = advantages[chunk]
            actor = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)[m].mean()
            clipped = old_values[chunk] + (values - old_values[chunk]).clamp(
                -value_clip, value_clip
            )
            critic = (
                0.5
                * torch.max((values - returns[chunk]) ** 2, (clipped - returns[chunk]) ** 2)[
                    m
                ].mean()
            )
            loss = actor + vf_coef * critic
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, max_norm)
            optimizer.step()
    return time.perf_counter() - start


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--minibatch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config, algo = build_benchmark_algo(
        args.model,
        args.max_new_tokens,
        args.episodes,
        f"ppo.epochs={args.epochs}",
        f"ppo.minibatch_episodes={args.minibatch}",
    )
    episodes = algo.env_runner_group.local_env_runner.sample()
    tokens = sum(len(e) for e in episodes) * args.epochs
    learner = algo.learner_group._learner
    module = learner.module["default_policy"]
    policy, value_head = copy.deepcopy(module.policy), copy.deepcopy(module.value_head)

    algo.learner_group.update(episodes=episodes[:2])  # warm-up (builds optimizer state)
    start = time.perf_counter()
    algo.learner_group.update(episodes=episodes)
    rllib_s = time.perf_counter() - start

    rows = episode_rows(episodes)
    bare_pytorch_update(
        policy, value_head, {k: v[:2] for k, v in rows.items()}, 1, 2, config.algo.lr
    )  # warm-up
    bare_s = bare_pytorch_update(
        policy, value_head, rows, args.epochs, args.minibatch, config.algo.lr
    )
    print(f"episodes {len(episodes)}, response tokens x epochs {tokens}")
    print(f"RLlib learner update:  {tokens / rllib_s:8.1f} tokens/s ({rllib_s:.2f} s)")
    print(f"bare PyTorch update:   {tokens / bare_s:8.1f} tokens/s ({bare_s:.2f} s)")
    print(f"RESULT rllib/bare update throughput ratio = {bare_s / rllib_s:.3f} (target >= 0.8)")
    algo.stop()

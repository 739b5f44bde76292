"""``rlhf-env label``: serve the labelling web app, export the judgments as preference data,
report agreement and a reward model's accuracy on fresh labels (docs/labelling.md)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

DEFAULT_DB = "sqlite:///runs/labels.db"


@click.group()
def label() -> None:
    """Human preference labels: serve the labelling app, export, report."""


@label.command()
@click.option("--db", default=DEFAULT_DB, show_default=True, help="SQLAlchemy database URL.")
@click.option(
    "--policy",
    default=None,
    help="Model spec, run folder (its last checkpoint) or checkpoint folder; default: the "
    "task's model.",
)
@click.option("--task", default=None, help="Task id (default: the run's, else Sentiment-v0).")
@click.option("-k", "k", default=2, show_default=True, help="Responses per prompt (>2: ranked).")
@click.option("--temperature", default=1.0, show_default=True)
@click.option("--max-new-tokens", default=None, type=int, help="Override the task's.")
@click.option("--split", default="test", show_default=True, help="Prompt split.")
@click.option("--seed", default=0, show_default=True)
@click.option("--batch-prompts", default=4, show_default=True, help="Prompts sampled per batch.")
@click.option("--ready", default=8, show_default=True, help="Comparisons kept sampled ahead.")
@click.option(
    "--labels-per-comparison",
    default=1,
    show_default=True,
    help="Labellers who judge each comparison (>= 2 measures their agreement).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to serve on.")
@click.option("--port", default=8765, show_default=True)
@click.option(
    "--token",
    default=None,
    help="Access token; generated when --host is not loopback (where one is required).",
)
def serve(
    db,
    policy,
    task,
    k,
    temperature,
    max_new_tokens,
    split,
    seed,
    batch_prompts,
    ready,
    labels_per_comparison,
    host,
    port,
    token,
):
    """Serve the labelling app: label responses of a policy into the database DB."""
    import uvicorn

    from agents.labelling.app import create_app
    from agents.labelling.feed import ComparisonFeed
    from agents.labelling.policy import resolve_policy
    from agents.labelling.sampling import ComparisonSampler, SamplingSettings
    from agents.labelling.security import is_loopback, new_secret
    from rlhf_env.data.judgments import JudgmentStore

    if token is None and not is_loopback(host):
        token = new_secret()
    store = JudgmentStore(db)
    source = resolve_policy(policy, task)
    settings = SamplingSettings(k, temperature, max_new_tokens, split, seed, batch_prompts)
    click.echo(f"loading {source.model} on {source.task} ...")
    feed = ComparisonFeed(
        ComparisonSampler(source, settings),
        store,
        ready=ready,
        labels_per_comparison=labels_per_comparison,
    )
    app = create_app(feed, store, token=token)
    link = f"http://{'localhost' if is_loopback(host) else host}:{port}/"
    click.echo(f"labelling {source.label} into {db}; {store.count()} judgments so far")
    click.echo(f"open {link}" + (f"?token={token}" if token else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


@label.command()
@click.argument("db")
@click.argument("out")
@click.option("--split", default="all", show_default=True, help="all, train or test.")
def export(db: str, out: str, split: str) -> None:
    """Write DB's ranked judgments to OUT (.jsonl) as preference rows: {prompt, chosen, rejected}
    for pairs, {prompt, responses: [best, ..., worst]} for rankings."""
    from rlhf_env.data.judgments import load_database_preferences
    from rlhf_env.data.preferences import parse_preferences

    rows = load_database_preferences(db, split)
    parse_preferences(rows)  # what training will read must be valid now
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as file:
        for row in rows:
            file.write(json.dumps(row) + "\n")
    click.echo(f"{len(rows)} preferences -> {path}")


@label.command()
@click.argument("db")
@click.option("--reward-model", default=None, help="A trained reward model's folder.")
@click.option(
    "--since",
    default=None,
    help="ISO time: labels after it are fresh (default: when the reward model was trained).",
)
def report(db: str, reward_model: str | None, since: str | None) -> None:
    """Judgments per labeller, agreement between labellers and, with --reward-model, its
    pairwise accuracy on fresh labels."""
    from datetime import UTC

    from agents.labelling.report import choices_by_labeller, fresh_accuracy, labeller_agreement
    from rlhf_env.data.judgments import JudgmentStore

    judgments = JudgmentStore(db, create=False).judgments()
    click.echo(f"{len(judgments)} judgments in {db}")
    for labeller, counts in sorted(choices_by_labeller(judgments).items()):
        shares = ", ".join(f"{choice} {n}" for choice, n in sorted(counts.items()))
        click.echo(f"  {labeller}: {sum(counts.values())} ({shares})")
    agreement = labeller_agreement(judgments)
    if agreement["agreement"] is None:
        click.echo("agreement between labellers: no comparison judged by two labellers")
    else:
        click.echo(
            f"agreement between labellers {agreement['agreement']:.3f} on "
            f"{agreement['comparisons']} comparisons ({agreement['pairs']} pairs of labellers)"
        )
    if reward_model is not None:
        start = None
        if since is not None:
            start = datetime.fromisoformat(since)
            start = start if start.tzinfo else start.replace(tzinfo=UTC)
        result = fresh_accuracy(judgments, reward_model, start)
        click.echo(
            f"reward model {reward_model}: pairwise accuracy {result['accuracy']:.3f} on "
            f"{result['labels']} fresh labels (after {result['since']})"
        )


COMMANDS = (label,)

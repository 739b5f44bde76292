"""The human-feedback loop of docs/labelling.md, with scripted labellers driving the browser.

Two labellers open the labelling app in headless Chromium (Playwright) and press the keys a
person would: ``vader`` prefers the response whose VADER compound score is higher (a tie when
they are equal), ``noisy`` does the same but picks at random a ``--noise`` share of the time,
so the two agree on about 1 − noise/2 of the comparisons. Every step is the documented command:

1. ``rlhf-env label serve`` on the initial policy; both labellers judge ``--labels``
   comparisons (each comparison by both: ``--labels-per-comparison 2``);
2. ``rlhf-env label report``: judgments and agreement between the labellers;
3. ``rlhf-env reward-model train`` on the database (held-out pairwise accuracy);
4. ``rlhf-env train`` PPO with that reward model as the task's reward;
5. ``rlhf-env eval --reward vader``: the held-out VADER gain of the trained policy;
6. ``rlhf-env label serve --policy <the PPO run>``: ``--fresh-labels`` comparisons of the new
   policy;
7. ``rlhf-env label report --reward-model``: the reward model's accuracy on those fresh labels.

The commands' output goes to ``<out>/label_loop.log``, the figures to ``<out>/summary.json``.

How to run (needs `rlhf-env prepare`; the system Chromium, as `make install` installs it)
    python benchmarks/label_loop.py                  # SmolLM2-135M on Sentiment-v0
    python benchmarks/label_loop.py --tiny           # the tiny task and models: checks the plumbing
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = dict(os.environ)  # the commands' environment; --threads sets their torch threads
SENTIMENT = {
    "task": "rlhf_env/Sentiment-v0",
    "ppo": "configs/ppo_sentiment_quick.yaml",
    "rm": "configs/reward_model.yaml",
    "rm_overrides": [],
    "max_new_tokens": "16",
}
TINY = {
    "task": "rlhf_env/Tiny-v0",
    "ppo": "configs/ppo_tiny.yaml",
    "rm": "configs/reward_model.yaml",
    "rm_overrides": ["model.backbone=tiny", "train.epochs=4", "train.batch_size=8"],
    "max_new_tokens": "8",
}


def run(log, *command: str) -> str:
    """Run an ``rlhf-env`` command; its output goes to the log and is returned."""
    print("$", " ".join(command), flush=True)
    result = subprocess.run(
        [str(BIN / "rlhf-env"), *command], capture_output=True, text=True, check=False, env=ENV
    )
    log.write(f"$ rlhf-env {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    log.flush()
    if result.returncode != 0:
        sys.exit(f"rlhf-env {command[0]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def label(args, log, db: str, policy: str | None, comparisons: int, seed: int) -> None:
    """Serve the app on ``policy`` and have both scripted labellers judge ``comparisons``."""
    from playwright.sync_api import sync_playwright
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["label", "serve", "--db", db, "--task", args.setup["task"], "--port", str(port)]
    command += ["--labels-per-comparison", "2", "--seed", str(seed)]
    command += ["--max-new-tokens", args.setup["max_new_tokens"], "--batch-prompts", "8"]
    command += ["--policy", policy] if policy else []
    print("$ rlhf-env", " ".join(command), flush=True)
    server = subprocess.Popen(
        [str(BIN / "rlhf-env"), *command], stdout=log, stderr=subprocess.STDOUT, env=ENV
    )
    vader = SentimentIntensityAnalyzer()
    rng = random.Random(seed)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True)
            pages = {}
            for name in ("vader", "noisy"):
                pages[name] = browser.new_context().new_page()
                _open(pages[name], f"http://localhost:{port}/", name, server)
            for _ in range(comparisons):
                for name, page in pages.items():
                    page.wait_for_selector("#prompt", timeout=600_000)
                    done = int(page.inner_text("#mine"))
                    texts = page.locator(".response .text")
                    scores = [vader.polarity_scores(texts.nth(i).inner_text())["compound"]
                              for i in range(2)]  # fmt: skip
                    key = "t" if scores[0] == scores[1] else str(1 + scores.index(max(scores)))
                    if name == "noisy" and rng.random() < args.noise:
                        key = rng.choice("12")
                    page.keyboard.press(key)
                    page.wait_for_selector(f"#mine:text-is('{done + 1}')", timeout=600_000)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=120)


def _open(page, url: str, name: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 600
    while True:  # the server loads the policy first
        try:
            page.goto(url)
            break
        except Exception:
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit("the labelling server did not start; see the log")
            time.sleep(1)
    page.fill("#name", name)
    page.click("#start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--labels", type=int, default=400, help="Comparisons of the initial policy."
    )
    parser.add_argument("--fresh-labels", type=int, default=100, help="Of the trained policy.")
    parser.add_argument("--noise", type=float, default=0.2, help="The noisy labeller's share.")
    parser.add_argument("--eval-episodes", type=int, default=96)
    parser.add_argument("--out", default="runs/label_loop")
    parser.add_argument("--tiny", action="store_true", help="Tiny task and models (seconds).")
    parser.add_argument(
        "--threads", type=int, default=0, help="Torch threads of each command (0: all cores)."
    )
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    # Stopped with SIGTERM, still stop the labelling server (the `finally` of label()).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.setup = TINY if args.tiny else SENTIMENT
    threads = []
    if args.threads:  # share the cores with another job: every command at this many threads
        ENV["OMP_NUM_THREADS"] = str(args.threads)
        threads = [f"scale.threads_per_worker={args.threads}"]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{out / 'labels.db'}"
    rm_dir, ppo_dir = out / "reward_model", out / "ppo"
    summary: dict = {"labels": args.labels, "fresh_labels": args.fresh_labels, "db": db}
    with (out / "label_loop.log").open("a") as log:
        label(args, log, db, None, args.labels, seed=0)
        report = run(log, "label", "report", db)
        summary["agreement"] = _figure(report, r"agreement between labellers ([0-9.]+)")
        rm = run(
            log, "reward-model", "train", args.setup["rm"], f"data.source={db}",
            f"run.output_dir={out}", "run.name=reward_model", "run.wandb=disabled",
            *args.setup["rm_overrides"],
        )  # fmt: skip
        summary["rm_held_out_accuracy"] = _figure(rm, r"-> ([0-9.]+); model")
        run(
            log, "train", args.setup["ppo"], f"run.output_dir={out}", "run.name=ppo",
            "run.wandb=disabled",
            f"task.overrides.reward={{name: reward_model, params: {{path: {rm_dir}}}}}",
            *threads,
        )  # fmt: skip
        evaluation = run(
            log, "eval", str(ppo_dir), "--reward", "vader", "--episodes", str(args.eval_episodes)
        )
        summary["vader_gain"] = _figure(evaluation, r"held-out gain ([+-][0-9.]+)")
        summary["kl_per_token"] = _figure(evaluation, r"held-out gain .* at KL/token ([0-9.]+)")
        label(args, log, db, str(ppo_dir), args.fresh_labels, seed=1)
        fresh = run(log, "label", "report", db, "--reward-model", str(rm_dir))
        summary["rm_fresh_accuracy"] = _figure(fresh, r"pairwise accuracy ([0-9.]+) on")
        summary["agreement_all"] = _figure(fresh, r"agreement between labellers ([0-9.]+)")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def _figure(text: str, pattern: str) -> float:
    match = re.search(pattern, text)
    if match is None:
        sys.exit(f"no {pattern!r} in:\n{text}")
    return float(match.group(1))


if __name__ == "__main__":
    main()

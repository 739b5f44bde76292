"""Benchmark: whole PPO iterations, time and peak memory, rlhf-env (RLlib) against TRL's PPOTrainer.

What it shows
- Seconds per PPO iteration of rlhf-env's PPO (RLlib's algorithm built as ``agents/driver/loop.py``
  builds it, through ``benchmarks/common.py``: ``num_env_runners=0``, ``engine: hf``): sample the
  batch (KV-cached policy stepping the batched environment, which scores each token against the
  frozen reference and the response with the reward), values and GAE in the learner connector,
  PPO epochs over minibatches, weight sync to the env runner.
- Seconds per iteration of TRL's ``PPOTrainer`` (``trl.experimental.ppo``; TRL 1.12.0 is the last
  release that ships it): ``generate``, reference forward, value forward, reward, GAE, PPO epochs.
- Their ratio, TRL s/iteration / rlhf-env s/iteration, measured in one run on the same machine
  (target >= 1: rlhf-env at least as fast), after one warm-up iteration on each side.
- The peak resident memory (``ru_maxrss``) of each side, each run in its own freshly spawned
  process, and their ratio. rlhf-env also starts Ray's helper processes (GCS, raylet, idle
  workers), which do none of the work; their memory at the end is printed beside the peak.

How to run (TRL is the optional ``bench`` extra; torch first, pinned, as in the Makefile)
    .venv/bin/pip install -e ".[bench]"
    python benchmarks/trl_ppo.py                  # SmolLM2-135M (needs `rlhf-env prepare`)
    python benchmarks/trl_ppo.py --model tiny     # well under a minute
    python benchmarks/trl_ppo.py --critic separate  # rlhf-env with its own critic backbone, as TRL

The same on both sides: the model and its weights (float32, dropout off), the task's prompts
(Sentiment-v0's movie-review openings, the train split; Tiny-v0's prompts for ``--model
tiny``), the reward (the task's reward plugin, VADER; TRL gets it through
:class:`TextRewardModel`), episodes per iteration (48), responses of exactly 16 new tokens
(EOS stopping off on both sides), sampling at temperature 1 with no top-k/top-p, generation in
batches of 16, a frozen reference model and a fixed KL coefficient (k1 estimator, per-token
penalty, score on the last token), GAE (γ 1, λ 0.95) with whitened advantages, PPO epochs (2),
minibatches of 16 episodes with one optimizer step each, clip 0.2, value clip 0.2, value
coefficient 0.1, the learning rate (constant), a value head that starts at zero, torch threads.

Differences that remain (each is what the library does, and is part of what is measured)
- Critic: rlhf-env's default is a value head on the policy's backbone, so one backbone forward
  gives log-probs and values. TRL needs a separate value model (``value_model``, called through
  ``getattr(model, model.base_model_prefix)`` and ``model.score``): here a sequence-
  classification model with the same weights, so TRL runs two backbones per training forward and
  keeps Adam state for both. ``--critic separate`` gives rlhf-env a critic backbone of its own
  (``ppo.critic=separate``) for a like-for-like comparison.
- Sampling and reference log-probs: rlhf-env's env runner steps the Gymnasium environment token
  by token (KV-cached policy; the environment scores each token against the reference with its
  own KV cache, in the same step); TRL calls ``generate`` (keeping its [B, T, V] scores for the
  sampling log-probs) and then runs one full forward of the reference per generation batch. TRL
  also applies the LM head to the prompt positions in its reference and training forwards;
  rlhf-env only to the response positions.
- Reward: TRL calls the reward as a sequence-classification model; :class:`TextRewardModel`
  decodes the last ``response_length`` tokens (as the environment does, special tokens skipped)
  and calls the same reward plugin. With pad == EOS (SmolLM2), TRL treats a sampled EOS as the
  end of the response and masks what follows (its tensors keep the full length, so the work is
  the same); rlhf-env, with EOS stopping off, keeps it as an ordinary token.
- Prompts: the same set, drawn differently: the environment draws uniformly with replacement,
  TRL's data loader shuffles without replacement, so the batches (and their prompt widths) differ.
- Gradient clipping: rlhf-env clips the global norm to 1.0 (RLlib); TRL's PPO loop never clips
  (one extra pass over the gradients per step on rlhf-env's side). rlhf-env uses Adam, TRL AdamW
  with weight decay 0 (the same update).
- Per iteration, rlhf-env also syncs the new weights from its learner into its env runner's copy
  of the policy (two policy copies in one process with ``num_env_runners=0``) and reduces RLlib's
  metrics; TRL logs its metrics. Neither evaluates nor checkpoints. rlhf-env's KL controller
  lives in ``agents/driver/loop.py``'s loop, not used here (TRL 1.12 has none): β stays fixed.
- TRL's defaults that would change the work are set to match: ``gradient_checkpointing=False``
  (TRL's default recomputes activations), ``bf16`` as ``--precision`` says on both sides
  (``fp32``: TRL's ``bf16=False``; ``bf16``: TRL's default bf16 autocast, rlhf-env's
  ``precision: bf16``),
  ``lr_scheduler_type="constant"``, ``num_sample_generations=0``; in TRL's batch arithmetic 48
  episodes in 3 minibatches of 16 are ``per_device_train_batch_size=48``,
  ``num_mini_batches=3``, ``gradient_accumulation_steps=1`` (accumulation would defer the
  optimizer steps).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import torch
from common import benchmark_task, build_benchmark_algo, gib, in_fresh_process

SIDES = ("rlhf_env", "trl")
OUTPUT_DIR = Path(__file__).resolve().parents[1] / "runs" / "trl_ppo_benchmark"  # git-ignored
LABELS = {"rlhf_env": "rlhf-env (RLlib PPO)", "trl": "TRL PPOTrainer"}


class _CompletionScores(torch.nn.Module):
    """Scores the completions of a batch of token rows with a text reward; see TextRewardModel."""

    def __init__(self, reward, tokenizer, response_length: int):
        super().__init__()
        self.reward, self.tokenizer, self.response_length = reward, tokenizer, response_length

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
        from transformers.modeling_outputs import BaseModelOutput

        width = input_ids.shape[1] - self.response_length
        decode = self.tokenizer.decode
        prompts = [
            decode(row[mask.bool()], skip_special_tokens=True)
            for row, mask in zip(input_ids[:, :width], attention_mask[:, :width])
        ]
        completions = [
            decode(row[mask.bool()], skip_special_tokens=True)
            for row, mask in zip(input_ids[:, width:], attention_mask[:, width:])
        ]
        totals, _ = self.reward.score(prompts, completions)
        scores = torch.tensor(totals, dtype=torch.float32)[:, None, None]
        return BaseModelOutput(hidden_states=(scores.expand(-1, input_ids.shape[1], 1),))


class TextRewardModel(torch.nn.Module):
    """A text reward (an rlhf-env reward plugin) in the form TRL's ``get_reward`` calls.

    TRL's PPO scores ``[query | response]`` rows with ``model.score(getattr(model,
    model.base_model_prefix)(...).hidden_states[-1])`` and reads the result at each row's last
    response token. Here the "backbone" decodes the last ``response_length`` tokens (the
    response; padding and special tokens skipped, as the environment decodes) and the text
    before them (the prompt), calls the reward, and returns its score at every position; the
    "score" head is the identity.
    """

    base_model_prefix = "backbone"

    def __init__(self, reward, tokenizer, response_length: int):
        super().__init__()
        self.backbone = _CompletionScores(reward, tokenizer, response_length)
        self.score = torch.nn.Identity()


def value_model_like(policy) -> torch.nn.Module:
    """TRL's separate value model: a sequence-classification model with the policy's backbone
    weights and a one-output ``score`` head that starts at zero (as rlhf-env's value head)."""
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(policy.config)
    config.num_labels = 1
    value = AutoModelForSequenceClassification.from_config(config)
    getattr(value, value.base_model_prefix).load_state_dict(policy.base_model.state_dict())
    torch.nn.init.zeros_(value.score.weight)
    return value


def run_rlhf_env(args) -> dict:
    """rlhf-env's PPO: ``algo.train()`` per iteration, as ``agents/driver/loop.py`` calls it."""
    import psutil
    import ray

    from agents.driver.results import iteration_record

    _, algo = build_benchmark_algo(
        args.model,
        args.max_new_tokens,
        args.rollout_batch,
        f"ppo.episodes_per_iteration={args.episodes}",
        f"ppo.epochs={args.epochs}",
        f"ppo.minibatch_episodes={args.minibatch}",
        f"ppo.lr={args.lr}",
        f"ppo.critic={args.critic}",
        f"precision={args.precision}",
        "kl.controller=fixed",
        f"kl.init_coef={args.kl_coef}",
        f"run.seed={args.seed}",
    )
    # Fixed-length responses: no end-of-sequence termination (TRL's side: stop_token=None).
    algo.env_runner_group.local_env_runner.env.unwrapped.batch.eos_ids = set()
    seconds, tokens, scores = [], [], []
    for _ in range(1 + args.iterations):
        start = time.perf_counter()
        record = iteration_record(algo.train())
        seconds.append(time.perf_counter() - start)
        tokens.append(int(record["perf/tokens"]))
        scores.append(record["reward/score"])
    helpers = 0  # Ray's GCS, raylet, dashboard and idle workers, started by ray.init
    for process in psutil.Process().children(recursive=True):
        try:
            helpers += process.memory_info().rss
        except psutil.Error:  # exited meanwhile
            pass
    result = _result(seconds, tokens, scores, helper_rss=helpers)
    algo.stop()
    ray.shutdown()
    return result


def run_trl(args) -> dict:
    """TRL's ``PPOTrainer.train()`` for ``1 + iterations`` batches, timed by a callback."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # trl.experimental, knowingly
    import gymnasium as gym
    import trl
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    import rlhf_env  # noqa: F401  (registers the tasks)
    from rewards import build_reward
    from rlhf_env.data.models import load_causal_lm, load_tokenizer
    from rlhf_env.data.prompts import load_prompts

    task = gym.spec(benchmark_task(args.model)).kwargs
    tokenizer = load_tokenizer(args.model)
    tokenizer.padding_side = "left"  # TRL's queries are left-padded
    prompts = load_prompts(task["prompts"], split="train").prompts
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in prompts]
    ids = ids * -(-args.episodes // len(ids))  # the data loader drops incomplete batches
    policy = load_causal_lm(args.model)
    config = PPOConfig(
        output_dir=str(OUTPUT_DIR),
        report_to="none",
        use_cpu=True,
        bf16=args.precision == "bf16",
        gradient_checkpointing=False,
        save_strategy="no",
        disable_tqdm=True,
        seed=args.seed,
        total_episodes=args.episodes * (1 + args.iterations),
        per_device_train_batch_size=args.episodes,
        gradient_accumulation_steps=1,
        num_mini_batches=args.episodes // args.minibatch,
        num_ppo_epochs=args.epochs,
        local_rollout_forward_batch_size=args.rollout_batch,
        response_length=args.max_new_tokens,
        temperature=1.0,
        stop_token=None,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        kl_coef=args.kl_coef,
        kl_estimator="k1",
        num_sample_generations=0,
    )

    class IterationTimer(TrainerCallback):
        def __init__(self):
            self.marks, self.scores = [], []

        def on_train_begin(self, *a, **k):
            self.marks.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            self.marks.append(time.perf_counter())

        def on_log(self, *a, logs=None, **k):
            if "objective/scores" in (logs or {}):
                self.scores.append(logs["objective/scores"])

    timer = IterationTimer()
    trainer = PPOTrainer(
        args=config,
        processing_class=tokenizer,
        model=policy,
        ref_model=load_causal_lm(args.model),
        value_model=value_model_like(policy),
        reward_model=TextRewardModel(build_reward(task["reward"]), tokenizer, args.max_new_tokens),
        train_dataset=Dataset.from_dict({"input_ids": ids}),
        callbacks=[timer],
    )
    trainer.remove_callback(PrinterCallback)  # no per-iteration metric dumps
    trainer.train()
    seconds = [b - a for a, b in zip(timer.marks, timer.marks[1:])]
    return {
        **_result(seconds, [args.episodes * args.max_new_tokens] * len(seconds), timer.scores),
        "version": trl.__version__,
    }


def _result(seconds: list[float], tokens: list[int], scores: list[float], **extra) -> dict:
    """Timed iterations (the first is the warm-up) and their mean."""
    timed = seconds[1:]
    return {
        "seconds": seconds,
        "mean_s": sum(timed) / len(timed),
        "tokens": tokens,
        "scores": scores,
        **extra,
    }


def run_side(side: str, args) -> dict:
    """One side, in its own process (:func:`common.in_fresh_process`)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return {"trl": run_trl, "rlhf_env": run_rlhf_env}[side](args)


def report(side: str, r: dict) -> None:
    label = LABELS[side] + (f" {r['version']}" if "version" in r else "")
    timed = ", ".join(f"{s:.2f}" for s in r["seconds"][1:])
    print(
        f"{label}: {r['mean_s']:.2f} s/iteration (warm-up {r['seconds'][0]:.2f} s; timed "
        f"{timed}); tokens/iteration {r['tokens']}; mean score per iteration "
        f"{[round(s, 3) for s in r['scores']]}"
    )
    helpers = (
        f" (+ Ray's other processes {gib(r['helper_rss'])} at the end)" if "helper_rss" in r else ""
    )
    print(f"  peak RSS of the process: {gib(r['peak_rss'])}{helpers}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        default="smollm2-135m-instruct",
        help="offline default, path, or tiny (a tiny random model, seconds)",
    )
    parser.add_argument("--episodes", type=int, default=48, help="episodes per iteration")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="response length")
    parser.add_argument(
        "--rollout-batch",
        type=int,
        default=16,
        help="episodes generated together (environments / TRL's forward batch)",
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--minibatch", type=int, default=16, help="episodes per optimizer step")
    parser.add_argument("--lr", type=float, default=1.5e-5)
    parser.add_argument("--kl-coef", type=float, default=0.1)
    parser.add_argument(
        "--critic",
        choices=("shared", "separate"),
        default="shared",
        help="rlhf-env's critic; TRL's is always a separate model",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="both sides: float32, or bf16 autocast",
    )
    parser.add_argument("--iterations", type=int, default=3, help="timed, after one warm-up")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", choices=SIDES, help="run only this side")
    args = parser.parse_args()
    if args.episodes % args.minibatch or args.episodes % args.rollout_batch:
        parser.error("--episodes must be a multiple of --minibatch and of --rollout-batch")
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    print(
        f"model {args.model}, {args.episodes} episodes x {args.max_new_tokens} tokens per "
        f"iteration, {args.epochs} epochs, minibatch {args.minibatch}, rollout batch "
        f"{args.rollout_batch}, critic {args.critic} (TRL: separate), {args.precision}, "
        "1 warm-up + "
        f"{args.iterations} timed iterations, {args.threads} threads",
        flush=True,
    )
    results = {}
    for side in (args.side,) if args.side else SIDES:
        results[side] = in_fresh_process(run_side, side, args)
        report(side, results[side])
    if len(results) == 2:
        ours, trl = results["rlhf_env"], results["trl"]
        print(
            f"RESULT TRL/rlhf-env seconds per iteration = {trl['mean_s'] / ours['mean_s']:.3f} "
            f"(target >= 1)"
        )
        print(
            f"RESULT peak RSS rlhf-env {gib(ours['peak_rss'])}, TRL {gib(trl['peak_rss'])}: "
            f"TRL/rlhf-env = {trl['peak_rss'] / ours['peak_rss']:.3f} (with Ray's other "
            f"processes added to rlhf-env: "
            f"{trl['peak_rss'] / (ours['peak_rss'] + ours['helper_rss']):.3f})"
        )

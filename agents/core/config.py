"""Typed training configuration: the sections every algorithm shares, and loading a preset.

A preset (``configs/*.yaml``) names its ``algorithm`` and holds that algorithm's own section
(``ppo:``, ``dpo:``, ...: its settings dataclass, which lives in the algorithm's folder) beside
the shared sections below; ``key=value`` overrides from the command line come last
(``ppo.lr=1e-5 run.iterations=20``). Unknown keys and wrong types are errors naming the key.

One home per setting: the task's defaults are its registration (:mod:`rlhf_env.envs`);
``task.overrides`` holds only what the user changes, and nothing else reaches ``gym.make``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

from agents.core.guard import GuardConfig
from agents.core.kl_control import KLController, make_kl_controller
from agents.core.lora import LoRAConfig
from agents.core.registry import ALGORITHMS, get_algorithm
from rlhf_env.data.typed_config import describe as describe_fields
from rlhf_env.data.typed_config import merge_sources, option, to_dict, to_typed

_f = option


@dataclass
class TaskConfig:
    id: str = _f("rlhf_env/Sentiment-v0", "Registered rlhf_env task id.")
    overrides: dict = _f(
        {},
        "gym.make keyword arguments that replace the registered task's "
        "defaults (model, max_new_tokens, prompts, reward, kl_estimator, ...); "
        "only what is set here changes. The task's model is also the policy.",
    )

    def __post_init__(self) -> None:
        from rlhf_env.envs.task import TaskSpec

        known = {f.name for f in fields(TaskSpec)}
        unknown = sorted(set(self.overrides) - known)
        if unknown:
            raise ValueError(
                f"task.overrides has unknown keys {unknown}; a task takes {sorted(known)}"
            )
        if "kl_coef" in self.overrides:
            raise ValueError(
                "set the initial β with kl.init_coef, not task.overrides.kl_coef: "
                "the KL controller owns β during training"
            )

    def registered(self) -> dict[str, Any]:
        """The task's registered keyword arguments (its defaults)."""
        import gymnasium as gym

        import rlhf_env  # noqa: F401  (registers the tasks)

        return dict(gym.spec(self.id).kwargs)

    def setting(self, name: str) -> Any:
        """A task argument as training sees it: the override if set, else the registered value,
        else :class:`~rlhf_env.envs.task.TaskSpec`'s default."""
        from rlhf_env.envs.task import TaskSpec

        if name in self.overrides:
            return self.overrides[name]
        registered = self.registered()
        if name in registered:
            return registered[name]
        return next(f.default for f in fields(TaskSpec) if f.name == name)


@dataclass
class KLConfig:
    controller: str = _f(
        "adaptive",
        "fixed, adaptive (PPO-KL rule, docs/formulation.md eq. 16) or proportional (eq. 17).",
    )
    init_coef: Optional[float] = _f(
        None,
        "Initial β (PPO: of the per-token reward; online DPO: "
        "of the KL term in the loss); null: the task's kl_coef.",
    )
    target: float = _f(0.05, "Target KL per token to the reference (adaptive/proportional).")
    horizon: int = _f(10000, "Horizon in tokens of the proportional controller.")
    min_coef: float = _f(0.0, "Floor of β for the adaptive and proportional controllers.")

    def build(self, beta: float) -> KLController:
        """The configured controller, starting from ``beta``."""
        kwargs = {}
        if self.controller in ("adaptive", "proportional"):
            kwargs.update(target=self.target, min_beta=self.min_coef)
        if self.controller == "proportional":
            kwargs["horizon"] = self.horizon
        return make_kl_controller(self.controller, beta=beta, **kwargs)


@dataclass
class ScaleConfig:
    num_env_runners: int = _f(0, "Remote env runners (0: sample in the driver process).")
    num_envs_per_env_runner: int = _f(8, "Environments each runner steps in one batch.")
    num_learners: int = _f(0, "Remote data-parallel learners (0: learn in the driver process).")
    threads_per_worker: int = _f(0, "Torch threads per process; 0 divides the cores evenly.")
    num_gpus_per_learner: float = _f(
        0,
        "GPUs of each learner (fractions share a GPU); the "
        "local learner too when num_learners is 0.",
    )
    num_gpus_per_env_runner: float = _f(
        0,
        "GPUs of each remote env runner (fractions share a "
        "GPU with learners); its policy, reference and vLLM "
        "engine run there.",
    )

    def __post_init__(self) -> None:
        for name in (
            "num_env_runners",
            "num_learners",
            "threads_per_worker",
            "num_gpus_per_learner",
            "num_gpus_per_env_runner",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"scale.{name} must be >= 0, got {getattr(self, name)}")
        if self.num_envs_per_env_runner < 1:
            raise ValueError("scale.num_envs_per_env_runner must be >= 1")

    @property
    def learning_processes(self) -> int:
        return max(1, self.num_learners)


@dataclass
class RunConfig:
    name: str = _f("ppo", "Run name; the run folder is <output_dir>/<name>.")
    output_dir: str = _f("runs", "Folder of run folders (checkpoints, W&B files, exports).")
    seed: int = _f(0, "Seed of prompts, sampling, minibatch order and initial weights.")
    iterations: int = _f(20, "Training iterations.")
    checkpoint_every: int = _f(5, "Save a checkpoint every N iterations (and at the end).")
    keep_checkpoints: int = _f(
        2,
        "Keep the newest N checkpoints (0: all); a SmolLM2 PPO "
        "checkpoint with its optimizer state is about 2.5 GB.",
    )
    eval_every: int = _f(5, "Evaluate on held-out prompts every N iterations (0: start/end).")
    eval_episodes: int = _f(32, "Held-out episodes per evaluation.")
    eval_envs: int = _f(
        8, "Environments an evaluation steps at once (more: bigger batches, different noise)."
    )
    samples_every: int = _f(5, "Log a table of sample generations every N iterations.")
    wandb: str = _f(
        "auto", "auto (online with WANDB_API_KEY, else offline), online, offline, disabled."
    )
    wandb_project: str = _f("rlhf-env", "W&B project.")
    resume: bool = _f(True, "Resume from the run folder's last checkpoint if there is one.")

    def __post_init__(self) -> None:
        if self.eval_envs < 1:
            raise ValueError(f"run.eval_envs must be >= 1, got {self.eval_envs}")


ENGINES = ("hf", "vllm")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    algorithm: str = _f(
        "ppo",
        f"One of {', '.join(ALGORITHMS)}; its settings are the section "
        "of the same name (dpo_online and dpo_offline: dpo).",
    )
    precision: str = _f(
        "fp32",
        "fp32, or bf16: the learner's forward in bf16 autocast "
        "(log-softmax, losses and optimiser state in float32), the env "
        "runners' policy copy and vLLM engine in bf16 weights.",
    )
    gradient_checkpointing: bool = _f(
        False,
        "The learner recomputes activations in the backward instead of keeping them (less memory).",
    )
    engine: str = _f(
        "hf",
        "Sampling engine of the env runners: hf (KV-cached transformers) or "
        "vllm (needs the vllm extra).",
    )
    task: TaskConfig = field(default_factory=TaskConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    algo: Any = field(
        default=None,
        metadata={
            "help": "The algorithm's own settings (filled "
            "from its section when the config is loaded)."
        },
    )

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def run_dir(self) -> Path:
        return Path(self.run.output_dir) / self.run.name

    @property
    def model(self) -> str:
        """The policy's model spec: the task's model (also the frozen reference)."""
        return self.task.setting("model")

    @property
    def initial_kl_coef(self) -> float:
        return self.kl.init_coef if self.kl.init_coef is not None else self.task.setting("kl_coef")

    def env_kwargs(self, **extra) -> dict:
        """``gym.make`` keyword arguments: the task overrides the user set, then ``extra``."""
        return {**self.task.overrides, **extra}

    def as_dict(self) -> dict:
        """The config as plain nested dicts, the algorithm's settings under their section (what
        ``config.yaml`` and W&B hold; :func:`load_config` reads it back)."""
        plain = to_dict(replace(self, algo=None))
        plain.pop("algo")
        plain[get_algorithm(self.algorithm).section] = to_dict(self.algo)
        return plain


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults, then the YAML preset, then ``key=value`` overrides; typed and validated, with
    the algorithm's section loaded into ``config.algo`` and checked by the algorithm."""
    raw = merge_sources(path, overrides)
    algorithm = get_algorithm(raw.get("algorithm", "ppo"))
    settings = raw.pop(algorithm.section, None) or {}
    others = sorted(key for key in raw if key in _sections() - {algorithm.section})
    if others:
        raise ValueError(
            f"section(s) {others} do not belong to algorithm "
            f"{algorithm.name!r}, whose settings are the {algorithm.section!r} "
            "section"
        )
    config = to_typed(TrainConfig, raw)
    config.algo = to_typed(algorithm.settings_class, settings)
    algorithm.validate(config)
    return config


def describe() -> list[str]:
    """``key = default: help`` for every shared field and every algorithm's section."""
    lines = describe_fields(TrainConfig)
    lines = [line for line in lines if not line.startswith("algo ")]
    for name in ALGORITHMS:
        algorithm = get_algorithm(name)
        lines.append(f"# {algorithm.section}: settings of algorithm {name}")
        lines += describe_fields(algorithm.settings_class, f"{algorithm.section}.")
    return list(dict.fromkeys(lines))


def _sections() -> set[str]:
    return {get_algorithm(name).section for name in ALGORITHMS}

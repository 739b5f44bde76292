"""Comparisons to label, sampled through the environment from a policy, one batch at a time.

Each batch resets ``prompts_per_batch * k`` environments of the policy's task so that every run
of ``k`` shares a prompt (:func:`rlhf_env.policy.rollout.collect_groups`), and samples one
response per environment with the KV-cached sampler. A group whose responses are not all
different and non-empty is dropped: it cannot become a preference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from agents.labelling.policy import PolicySource
from rlhf_env.data.judgments import Comparison


@dataclass(frozen=True)
class SamplingSettings:
    """How responses are sampled (shown to the labeller and stored with each judgment)."""

    k: int = 2
    temperature: float = 1.0
    max_new_tokens: int | None = None
    split: str = "test"
    seed: int = 0
    prompts_per_batch: int = 4

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError(f"k (responses per prompt) must be >= 2, got {self.k}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.prompts_per_batch < 1:
            raise ValueError(f"prompts per batch must be >= 1, got {self.prompts_per_batch}")


class ComparisonSampler:
    """Callable returning the next batch of comparisons of ``policy`` (see the module
    docstring); batch ``n`` uses seed ``settings.seed + n``."""

    def __init__(self, policy: PolicySource, settings: SamplingSettings):
        import gymnasium as gym

        import rlhf_env  # noqa: F401  (registers the tasks)
        from rlhf_env.data.models import load_causal_lm
        from rlhf_env.policy.sampler import LMSampler

        overrides = {**policy.task_overrides, "split": settings.split}
        if settings.max_new_tokens is not None:
            overrides["max_new_tokens"] = settings.max_new_tokens
        num_envs = settings.k * settings.prompts_per_batch
        self.envs = gym.make_vec(
            policy.task, num_envs=num_envs, vectorization_mode="vector_entry_point", **overrides
        )
        model = load_causal_lm(policy.model)
        self.sampler = LMSampler(
            model, num_envs, temperature=settings.temperature, seed=settings.seed
        )
        self.policy, self.settings = policy, settings
        self.recorded_settings = {
            **asdict(settings),
            "max_new_tokens": self.envs.unwrapped.spec_args.max_new_tokens,
        }
        self.batches = 0

    def __call__(self) -> list[Comparison]:
        from rlhf_env.policy.rollout import collect_groups

        groups = collect_groups(
            self.envs, self.sampler, self.settings.k, seed=self.settings.seed + self.batches
        )
        self.batches += 1
        return [
            Comparison(
                prompt=prompt,
                responses=tuple(responses),
                policy=self.policy.label,
                checkpoint=self.policy.checkpoint,
                task=self.policy.task,
                sampling=self.recorded_settings,
            )
            for prompt, responses in groups
            if all(r.strip() for r in responses)
            and len({r.strip() for r in responses}) == len(responses)
        ]

"""The GRPO family on RLlib end to end on the tiny task: learning, variants, dynamic sampling,
no reference at β = 0."""

import json

import pytest
import torch

from agents.driver.loop import train

PRESET = "configs/grpo_tiny.yaml"


def evals(config) -> list[dict]:
    return [json.loads(line) for line in (config.run_dir / "eval.jsonl").read_text().splitlines()]


def test_grpo_raises_the_held_out_score_with_a_bounded_kl(tiny_config):
    config = tiny_config("run.iterations=10", "run.checkpoint_every=10", preset=PRESET)
    records = train(config, progress=False)
    before, after = evals(config)[0], evals(config)[-1]
    assert after["eval/score"] > before["eval/score"] + 0.3, (before, after)
    assert after["eval/kl_per_token"] < 0.2
    assert all(r["grpo/kl"] >= 0 for r in records)  # the k3 term is measured in the loss


@pytest.mark.parametrize(
    "variant",
    [
        ("grpo.advantage=dr_grpo", "grpo.aggregation=constant"),  # Dr. GRPO
        ("grpo.advantage=rloo", "grpo.aggregation=sequence"),  # RLOO, GRPO's per-sequence mean
        ("grpo.sequence_ratio=true", "grpo.clip_low=0.05", "grpo.clip_high=0.05"),  # GSPO
        ("grpo.kl_in=reward", "kl.init_coef=0.05"),  # the KL in the environment's reward
        ("grpo.correction=tis",),  # rollout correction: weights from a learner pre-pass
    ],
    ids=["dr_grpo", "rloo", "gspo", "kl_in_reward", "tis"],
)
def test_each_variant_trains(tiny_config, variant):
    records = train(
        tiny_config(
            "run.iterations=2",
            "run.checkpoint_every=0",
            "run.eval_episodes=0",
            *variant,
            preset=PRESET,
        ),
        progress=False,
    )
    assert [r["iteration"] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["grpo/policy_loss"])) for r in records)
    if "grpo.correction=tis" in variant:  # the sampler and the learner agree: weights 1
        assert records[0]["rollout/is_ratio_max"] == pytest.approx(1.0, abs=1e-4)
        assert records[0]["rollout/masked_fraction"] == 0


def test_dynamic_sampling_drops_tied_groups_and_skips_an_update_without_signal(tiny_config):
    """A reward that scores every response 0 ties every group: all are dropped, the sampling
    rounds stop at their bound, and nothing is trained."""
    never = "{name: keyword, params: {keywords: [zebra]}}"  # not a word of the tiny vocabulary
    config = tiny_config(
        "run.iterations=1",
        "run.checkpoint_every=0",
        "run.eval_episodes=0",
        f"task.overrides.reward={never}",
        "grpo.max_sampling_rounds=2",
        preset=PRESET,
    )
    (record,) = train(config, progress=False)
    assert record["grpo/dropped_groups"] == 12 * 3  # the first round's and two more rounds'
    assert record["grpo/sampling_rounds"] == 3
    assert "grpo/policy_loss" not in record  # no update


def test_beta_zero_loads_no_reference(tiny_config, build_algo):
    config = tiny_config("kl.init_coef=0", preset=PRESET)
    batch = build_algo(config).env_runner_group.local_env_runner.env.unwrapped.batch
    assert batch.reference is None
    assert train(config, progress=False)[-1]["reward/kl"] == 0.0

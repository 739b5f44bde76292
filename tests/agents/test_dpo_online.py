"""Online DPO on RLlib end to end on the tiny task: grouped sampling, pairing, learning."""

import json

import numpy as np
import pytest
import torch

from agents.core.columns import KL_COEF, PAIR_WEIGHT, REF_LOGP
from agents.dpo.connector import PreferencePairConnector, best_worst_pairs
from agents.driver.loop import train

PRESET = "configs/dpo_online_tiny.yaml"


def test_groups_share_a_prompt_and_carry_reference_logprobs(tiny_config, build_algo):
    runner = build_algo(tiny_config(preset=PRESET)).env_runner_group.local_env_runner
    runner.set_round(kl_coef=0.3, iteration=0)
    episodes = runner.sample()
    assert len(episodes) == 16
    groups = {}
    for episode in episodes:
        first = episode.get_observations(0)
        prompt = tuple(first["input_ids"][: first["attention_mask"].sum()])
        groups.setdefault(episode.custom_data["group"], set()).add(prompt)
        ref = np.asarray(episode.get_extra_model_outputs(REF_LOGP))
        assert len(ref) == len(episode) and np.all(ref <= 0)
    assert len(groups) == 4 and all(len(prompts) == 1 for prompts in groups.values())
    pairs = best_worst_pairs(episodes)
    assert len(pairs) == 4  # one per group; a tied group's pair has weight 0
    for chosen, rejected, weight in pairs:
        assert chosen.custom_data["group"] == rejected.custom_data["group"]
        group = [
            e.custom_data["score"]
            for e in episodes
            if e.custom_data["group"] == chosen.custom_data["group"]
        ]
        best, worst = chosen.custom_data["score"], rejected.custom_data["score"]
        assert best == max(group) >= worst == min(group)
        assert weight == float(best > worst)
    rows = PreferencePairConnector()(rl_module=None, batch={}, episodes=episodes)["default_policy"]
    # the rows carry each response's per-token reference log-probs (0 on padding), its pair's
    # weight and the β its episode was sampled under
    for i, (chosen, _, _) in enumerate(pairs):
        ref = np.asarray(chosen.get_extra_model_outputs(REF_LOGP))
        torch.testing.assert_close(rows[REF_LOGP][i, : len(ref)], torch.tensor(ref))
    assert rows[REF_LOGP].shape == rows["actions"].shape
    assert not rows[REF_LOGP][~rows["loss_mask"]].any()
    assert rows[PAIR_WEIGHT].tolist() == [pair[2] for pair in pairs] * 2
    torch.testing.assert_close(rows[KL_COEF], torch.full((2 * len(pairs),), 0.3))


def test_online_dpo_raises_the_held_out_score(tiny_config):
    config = tiny_config(
        "run.iterations=10", "run.checkpoint_every=10", "run.eval_every=0", preset=PRESET
    )
    records = train(config, progress=False)
    evals = [json.loads(line) for line in (config.run_dir / "eval.jsonl").read_text().splitlines()]
    assert evals[-1]["eval/score"] > evals[0]["eval/score"] + 0.3, evals
    assert records[-1]["dpo/rewards/accuracy"] > 0.6
    assert records[-1]["dpo/loss"] < records[0]["dpo/loss"]


def test_group_size_must_divide_the_environments(tiny_config):
    with pytest.raises(ValueError, match="must be a multiple of the group size dpo.group_size=4"):
        tiny_config("scale.num_envs_per_env_runner=6", preset=PRESET)


@pytest.mark.parametrize(
    "preset, override, message",
    [
        ("ppo_tiny", "ppo.minibatch_episodes=5", "ppo.minibatch_episodes=5 does not split"),
        ("grpo_tiny", "grpo.minibatch_groups=3", "grpo.minibatch_groups=3 does not split"),
        ("grpo_tiny", "grpo.group_size=3", "multiple of the group size grpo.group_size=3"),
    ],
)
def test_counts_that_do_not_divide_over_the_learners_are_named(
    tiny_config, preset, override, message
):
    with pytest.raises(ValueError, match=message):
        tiny_config("scale.num_learners=2", override, preset=f"configs/{preset}.yaml")


def test_the_kl_term_holds_the_policy_near_the_reference(tiny_config):
    def final_penalty(coef):
        config = tiny_config(
            f"run.name=dpo_tiny_kl{coef}",
            "run.iterations=8",
            "run.checkpoint_every=0",
            "kl.controller=fixed",
            f"kl.init_coef={coef}",
            "kl.min_coef=0",
            preset=PRESET,
        )
        records = train(config, progress=False)
        assert all(r["dpo/kl_coef"] == coef for r in records)
        # Σ_t k2 per response, measured by the learner (the tiny task's k1 means are too noisy)
        return np.mean([r["dpo/kl_penalty"] for r in records[-2:]])

    free, held = final_penalty(0.0), final_penalty(1.0)
    assert held < 0.3 * free, (held, free)

"""Online DPO on RLlib end to end on the tiny task: grouped sampling, pairing, learning."""

import json

import numpy as np
import pytest
import torch

from agents.core.rllib_config import build_algorithm_config
from agents.dpo.connector import PreferencePairConnector, best_worst_pairs
from agents.dpo.rows import KL_COEF, REF_LOGPS, REF_TOKEN_LOGPS
from agents.core.env_runner import REF_LOGP
from agents.driver.loop import train

DPO = ("algorithm=dpo_online", "dpo.group_size=4", "dpo.lr=3e-3", "dpo.beta=0.1",
       "scale.num_envs_per_env_runner=16", "run.name=dpo_tiny")


def test_groups_share_a_prompt_and_carry_reference_logprobs(tiny_config):
    algo = build_algorithm_config(tiny_config(*DPO)).build_algo()
    try:
        runner = algo.env_runner_group.local_env_runner
        runner.set_round(kl_coef=0.3, iteration=0)
        episodes = runner.sample()
    finally:
        algo.stop()
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
    for chosen, rejected in pairs:
        assert chosen.custom_data["group"] == rejected.custom_data["group"]
        group = [e.custom_data["score"] for e in episodes
                 if e.custom_data["group"] == chosen.custom_data["group"]]
        assert chosen.custom_data["score"] == max(group) > rejected.custom_data["score"] == min(group)
    rows = PreferencePairConnector()(rl_module=None, batch={}, episodes=episodes)["default_policy"]
    # the loss's per-token reference log-probs sum to the DPO term's sequence log-probs, and
    # every row carries the β its episode was sampled under
    torch.testing.assert_close(rows[REF_TOKEN_LOGPS].sum(-1), rows[REF_LOGPS])
    assert rows[REF_TOKEN_LOGPS].shape == rows["actions"].shape
    assert not rows[REF_TOKEN_LOGPS][~rows["loss_mask"]].any()
    torch.testing.assert_close(rows[KL_COEF], torch.full((2 * len(pairs),), 0.3))


def test_online_dpo_raises_the_held_out_score(tiny_config):
    config = tiny_config(*DPO, "run.iterations=10", "run.checkpoint_every=10")
    records = train(config, progress=False)
    evals = [json.loads(line) for line in (config.run_dir / "eval.jsonl").read_text().splitlines()]
    assert evals[-1]["eval/score"] > evals[0]["eval/score"] + 0.3, evals
    assert records[-1]["dpo/rewards/accuracy"] > 0.6
    assert records[-1]["dpo/loss"] < records[0]["dpo/loss"]


def test_group_size_must_divide_the_environments(tiny_config):
    algo = build_algorithm_config(tiny_config(*DPO, "scale.num_envs_per_env_runner=6")).build_algo()
    try:
        with pytest.raises(ValueError, match="multiple of the group size"):
            algo.env_runner_group.local_env_runner.sample()
    finally:
        algo.stop()


def test_the_kl_term_holds_the_policy_near_the_reference(tiny_config):
    def final_penalty(coef):
        config = tiny_config(*DPO, f"run.name=dpo_tiny_kl{coef}", "run.iterations=8",
                             "run.checkpoint_every=0", "kl.controller=fixed",
                             f"kl.init_coef={coef}", "kl.min_coef=0")
        records = train(config, progress=False)
        assert all(r["dpo/kl_coef"] == coef for r in records)
        # Σ_t k2 per response, measured by the learner (the tiny task's k1 means are too noisy)
        return np.mean([r["dpo/kl_penalty"] for r in records[-2:]])

    free, held = final_penalty(0.0), final_penalty(1.0)
    assert held < 0.3 * free, (held, free)

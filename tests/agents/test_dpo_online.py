"""Online DPO on RLlib end to end on the tiny task: grouped sampling, pairing, learning."""

import json

import numpy as np
import pytest

from agents.algorithm import build_algorithm_config
from agents.dpo.connector import best_worst_pairs
from agents.env_runner import REF_LOGP
from agents.train import train

DPO = ("algorithm=dpo_online", "dpo.group_size=4", "dpo.lr=3e-3", "dpo.beta=0.1",
       "scale.num_envs_per_env_runner=16", "run.name=dpo_tiny")


def test_groups_share_a_prompt_and_carry_reference_logprobs(tiny_config):
    algo = build_algorithm_config(tiny_config(*DPO)).build_algo()
    try:
        episodes = algo.env_runner_group.local_env_runner.sample()
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
    for chosen, rejected in best_worst_pairs(episodes):
        assert chosen.custom_data["group"] == rejected.custom_data["group"]
        assert chosen.get_return() > rejected.get_return()


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

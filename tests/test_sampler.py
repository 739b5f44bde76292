"""The KV-cached policy sampler: right log-probs, follows resets, reproducible."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlhf_env  # noqa: F401
from rlhf_env.data.tiny import tiny_model
from rlhf_env.policy.sampler import LMSampler


def make_vec(num_envs=3, **kwargs):
    return gym.make_vec(
        "rlhf_env/Tiny-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs
    )


def test_logprobs_equal_the_policy_full_forward_and_follow_autoreset():
    policy = tiny_model(seed=1)
    envs = make_vec(max_new_tokens=4)
    sampler = LMSampler(policy, 3, seed=0)
    obs, _ = envs.reset(seed=0)
    for _ in range(12):  # spans several autoresets
        actions = sampler.act(obs)
        for row, action in enumerate(actions):
            n = obs["attention_mask"][row].sum()
            with torch.no_grad():
                logits = policy(torch.as_tensor(obs["input_ids"][row, :n][None])).logits[0, -1]
            assert action.logprob == pytest.approx(
                torch.log_softmax(logits, -1)[int(action)].item(), abs=1e-5
            )
        obs, *_ = envs.step(actions)


def test_same_seed_same_tokens_and_single_env_observations():
    env = gym.make("rlhf_env/Tiny-v0")
    runs = []
    for _ in range(2):
        sampler = LMSampler(tiny_model(), 1, seed=7)
        obs, _ = env.reset(seed=0)
        tokens = []
        for _ in range(5):
            action = sampler.act(obs)
            tokens.append(int(action))
            obs, _, terminated, truncated, info = env.step(action)
            assert info["logprob_supplied"]
            if terminated or truncated:
                break
        runs.append(tokens)
    assert runs[0] == runs[1]


def test_same_policy_as_reference_gives_zero_kl():
    envs = make_vec(num_envs=2, max_new_tokens=5)
    sampler = LMSampler(tiny_model(), 2, seed=0)
    obs, _ = envs.reset(seed=0)
    for _ in range(5):
        obs, _, _, _, info = envs.step(sampler.act(obs))
        assert np.allclose(info["kl"], 0.0, atol=1e-5)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature"):
        LMSampler(tiny_model(), 1, temperature=0)

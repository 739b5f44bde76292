"""The environment's per-token rewards against hand computations, and its batched form."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlhf_env  # noqa: F401  (registers the tasks)
from rlhf_env import TokenAction
from rlhf_env.data.tiny import tiny_model, tiny_tokenizer

WORDS = ["good", "great", "movie", "film"]


def uniform_reference():
    """A tiny Llama whose (tied) output layer is zero: every token has log-prob −log V."""
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight.zero_()
    return model


def make_tiny(reward, **kwargs):
    return gym.make(
        "rlhf_env/Tiny-v0",
        model=kwargs.pop("model", uniform_reference()),
        tokenizer="tiny",
        reward=reward,
        **kwargs,
    ).unwrapped


def ids(*words):
    return [tiny_tokenizer().convert_tokens_to_ids(w) for w in words]


@pytest.mark.parametrize(
    "estimator, kl",
    [
        ("k1", lambda d: d),
        ("k2", lambda d: 0.5 * d * d),
        ("k3", lambda d: (math.exp(-d) - 1) + d),
    ],
)
def test_per_token_rewards_by_hand_with_beta_change(estimator, kl, constant_score):
    env = make_tiny(constant_score, max_new_tokens=4, kl_coef=0.1, kl_estimator=estimator)
    log_v = math.log(env.action_space.n)  # uniform reference: log π_ref = −log V
    env.reset(seed=0, options={"prompt": "the movie was"})
    sampled = [-1.0, -2.5, -0.3, -4.0]
    rewards, infos = [], []
    for t, (token, logprob) in enumerate(zip(ids(*WORDS), sampled)):
        if t == 2:
            env.kl_coef = 0.3  # β changes mid-episode (an adaptive controller would do this)
        _, reward, terminated, truncated, info = env.step(TokenAction(token, logprob))
        rewards.append(reward)
        infos.append(info)
    betas = [0.1, 0.1, 0.3, 0.3]
    expected = [-beta * kl(lp + log_v) for beta, lp in zip(betas, sampled)]
    expected[-1] += 0.7  # the score arrives with the last token
    assert rewards == pytest.approx(expected, abs=1e-5)
    assert [i["ref_logprob"] for i in infos] == pytest.approx([-log_v] * 4, abs=1e-5)
    assert [i["kl"] for i in infos] == pytest.approx([kl(lp + log_v) for lp in sampled], abs=1e-5)
    assert truncated and not terminated
    assert infos[-1]["score"] == pytest.approx(0.7)
    assert infos[-1]["reward_components"] == {"constant": pytest.approx(0.7)}
    assert infos[-1]["completion"] == " ".join(WORDS)
    assert "score" not in infos[0]  # delivered at the last step, not before


def test_plain_int_actions_mean_zero_kl(constant_score):
    env = make_tiny(constant_score, max_new_tokens=3)
    env.reset(seed=0)
    rewards = []
    for token in ids("good", "bad", "fun"):
        _, reward, *_, info = env.step(token)
        assert info["logprob_supplied"] is False
        assert info["kl"] == 0.0
        rewards.append(reward)
    assert rewards == pytest.approx([0.0, 0.0, 0.7])


def test_reference_logprobs_equal_a_full_forward(constant_score):
    reference = tiny_model()
    env = make_tiny(constant_score, model=reference, max_new_tokens=6)
    obs, _ = env.reset(seed=3)
    tokens = obs["input_ids"][: obs["attention_mask"].sum()].tolist()
    for token in ids("the", "film", "was", "really", "good", "and"):
        _, _, _, _, info = env.step(TokenAction(token, -1.0))
        with torch.no_grad():
            logits = reference(torch.tensor([tokens])).logits[0, -1]
        assert info["ref_logprob"] == pytest.approx(
            torch.log_softmax(logits, -1)[token].item(), abs=1e-5
        )
        tokens.append(token)


def test_eos_terminates_and_observation_layout(constant_score):
    env = make_tiny(constant_score, max_new_tokens=5)
    obs, info = env.reset(seed=0, options={"prompt": "the film"})
    assert obs["attention_mask"].tolist()[:3] == [1, 1, 0]
    assert obs["input_ids"].tolist()[:2] == ids("the", "film")
    env.step(ids("good")[0])
    obs, reward, terminated, truncated, info = env.step(tiny_tokenizer().eos_token_id)
    assert terminated and not truncated and reward == pytest.approx(0.7)
    assert obs["attention_mask"].sum() == 4
    with pytest.raises(RuntimeError, match="reset"):
        env.step(ids("good")[0])


def test_reset_is_reproducible_and_render_shows_rewards(constant_score):
    env = make_tiny(constant_score, max_new_tokens=2, render_mode="ansi")
    first = [env.reset(seed=11)[1]["prompt"] for _ in range(1)]
    again = [env.reset(seed=11)[1]["prompt"] for _ in range(1)]
    assert first == again
    env.step(TokenAction(ids("good")[0], -1.0))
    env.step(TokenAction(ids("great")[0], -1.0))
    text = env.render()
    assert "prompt:" in text and "'good'" in text and "score: +0.7000" in text


def test_vector_env_matches_single_env_and_autoresets(constant_score):
    """Rows of the batched env get the same rewards as single envs; one reward call per step."""
    prompts = ["the movie was", "i think the film"]
    vec = gym.make_vec(
        "rlhf_env/Tiny-v0",
        num_envs=2,
        model=tiny_model(),
        tokenizer="tiny",
        reward=constant_score,
        max_new_tokens=3,
    )
    obs, _ = vec.reset(seed=0, options={"prompts": prompts})
    eos = tiny_tokenizer().eos_token_id
    plan = [ids("good", "bad", "fun"), [ids("great")[0], eos, ids("fun")[0]]]
    logps = [[-1.0, -2.0, -3.0], [-0.5, -1.5, -2.5]]
    vec_rewards, vec_done = [], []
    for t in range(3):
        actions = TokenAction.batch([plan[0][t], plan[1][t]], [logps[0][t], logps[1][t]])
        obs, reward, terminated, truncated, info = vec.step(actions)
        vec_rewards.append(reward.copy())
        vec_done.append(terminated | truncated)
    # Row 1 ended with EOS at t=1, so at t=2 it was restarted (reward 0, a fresh prompt).
    assert vec_done[1].tolist() == [False, True] and vec_done[2].tolist() == [True, False]
    assert vec_rewards[2][1] == 0.0
    assert constant_score.calls == [["great"], ["good bad fun"]]
    for row, prompt in enumerate(prompts):
        env = make_tiny(constant_score, model=tiny_model(), max_new_tokens=3)
        env.reset(options={"prompt": prompt})
        steps = 2 if row == 1 else 3
        for t in range(steps):
            _, reward, *_ = env.step(TokenAction(plan[row][t], logps[row][t]))
            assert reward == pytest.approx(vec_rewards[t][row], abs=1e-5)


def test_vector_env_kl_coef_is_settable(constant_score):
    vec = gym.make_vec(
        "rlhf_env/Tiny-v0",
        num_envs=2,
        model=uniform_reference(),
        tokenizer="tiny",
        reward=constant_score,
        max_new_tokens=3,
    )
    vec.reset(seed=0)
    vec.unwrapped.kl_coef = 0.5
    log_v = math.log(vec.single_action_space.n)
    _, reward, *_ = vec.step(TokenAction.batch(ids("good", "bad"), [-1.0, -1.0]))
    assert reward == pytest.approx([-0.5 * (log_v - 1.0)] * 2, abs=1e-5)


def test_fresh_process_can_make_by_module_prefixed_id():
    import subprocess
    import sys

    code = (
        "import gymnasium as gym; env = gym.make('rlhf_env:rlhf_env/Tiny-v0'); "
        "obs, _ = env.reset(seed=0); print(env.action_space)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Discrete" in out.stdout


def test_observation_in_space_after_steps(constant_score):
    env = make_tiny(constant_score, max_new_tokens=4)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    for token in ids("good", "fun"):
        obs, *_ = env.step(np.int64(token))
        assert env.observation_space.contains(obs)

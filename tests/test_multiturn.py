"""Multi-turn episodes: the environment's tokens are observations, never actions; the reference
and the sampler extend their KV caches by them; the guess-the-number game and its score."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlhf_env  # noqa: F401  (registers the tasks)
from rewards import get_reward
from rewards.errors import RewardPluginError
from rlhf_env import TokenAction
from rlhf_env.data.tiny import tiny_model, tiny_tokenizer
from rlhf_env.envs.guess_number import GuessNumber
from rlhf_env.envs.turns import Reply, build_partner
from rlhf_env.policy.sampler import LMSampler

EOS = tiny_tokenizer().eos_token_id


def ids(text):
    return tiny_tokenizer()(text, add_special_tokens=False)["input_ids"]


def uniform_reference():
    """A tiny Llama whose (tied) output layer is zero: every token has log-prob −log V."""
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight.zero_()
    return model


def make_guess(**kwargs):
    return gym.make(
        "rlhf_env/TinyGuess-v0",
        model=kwargs.pop("model", uniform_reference()),
        tokenizer="tiny",
        **kwargs,
    ).unwrapped


def reset_with_target(env, target):
    index = env.prompts.columns["target"].index(target)
    return env.reset(seed=0, options={"prompt_index": index})


def valid(observation):
    return observation["input_ids"][: observation["attention_mask"].sum()].tolist()


def test_environment_tokens_are_observed_not_acted_and_carry_no_reward_or_kl():
    env = make_guess(kl_coef=0.1, render_mode="ansi")
    log_v = math.log(env.action_space.n)
    observation, _ = reset_with_target(env, 2)
    prompt = valid(observation)
    # Turn 1 guesses 1 word ("too short" comes back); turn 2 guesses 2 words: solved.
    actions = [*ids("good"), EOS, *ids("good fun"), EOS]
    sampled = [-1.0, -2.0, -0.5, -3.0, -1.5]
    rewards, infos = [], []
    for token, logprob in zip(actions, sampled):
        observation, reward, terminated, truncated, info = env.step(TokenAction(token, logprob))
        rewards.append(reward)
        infos.append(info)
        if info["env_tokens"]:
            reply = valid(observation)[-info["env_tokens"] :]
            assert reply == ids("too short")  # appended within the step that ended the turn
    assert [i["env_tokens"] for i in infos] == [0, 2, 0, 0, 0]
    assert terminated and not truncated
    stream = [*ids("good"), EOS, *ids("too short"), *ids("good fun"), EOS]
    assert valid(observation) == prompt + stream  # token in, token out
    final = infos[-1]
    assert final["agent_mask"].tolist() == [True, True, False, False, True, True, True] + [
        False
    ] * (24 - 7)  # max_new_tokens wide
    assert final["response_length"] == 5  # the agent's tokens only
    # One KL term and one reward per agent token (eq. 44); the score (eq. 46) is 1 − 0.1·(2 − 1).
    kls = [lp + log_v for lp in sampled]
    assert [i["kl"] for i in infos] == pytest.approx(kls, abs=1e-5)
    expected = [-0.1 * kl for kl in kls]
    expected[-1] += 0.9
    assert rewards == pytest.approx(expected, abs=1e-5)
    assert final["score"] == pytest.approx(0.9)
    assert final["episode_kl"] == pytest.approx(sum(kls), abs=1e-4)
    assert final["completion"] == "good too short good fun"
    assert final["agent_completion"] == "good good fun"  # what the guard measures
    text = env.render()
    assert text.count(" env\n") == 2 and text.count("  reward ") == 5


def test_reference_logprobs_after_inserted_tokens_equal_a_full_forward():
    reference = tiny_model(seed=3)
    env = make_guess(model=reference)
    observation, _ = reset_with_target(env, 3)
    inserted = 0
    for token in [*ids("good"), EOS, *ids("good fun"), EOS, *ids("a movie"), EOS]:
        with torch.no_grad():
            logits = reference(torch.tensor([valid(observation)])).logits[0, -1]
        observation, _, terminated, truncated, info = env.step(token)
        full = torch.log_softmax(logits, -1)[token].item()
        assert info["ref_logprob"] == pytest.approx(full, abs=1e-5)
        inserted += info["env_tokens"]
        if terminated or truncated:
            break
    assert inserted == 4  # two replies ("too short" twice) went through the reference's cache


def test_max_turns_ends_the_game_and_a_reply_that_does_not_fit_truncates():
    env = make_guess(max_turns=2)
    reset_with_target(env, 3)
    steps = [env.step(token) for token in [*ids("good"), EOS, *ids("good"), EOS]]
    assert [s[4]["env_tokens"] for s in steps] == [0, 2, 0, 0]  # no reply after the last turn
    *_, terminated, truncated, info = steps[-1]
    assert terminated and not truncated and info["score"] == 0.0

    env = make_guess(max_new_tokens=3)  # "good <eos>" + "too short" would fill all 3
    reset_with_target(env, 3)
    env.step(ids("good")[0])
    observation, _, terminated, truncated, info = env.step(EOS)
    assert truncated and not terminated and info["env_tokens"] == 0
    assert info["agent_mask"].tolist() == [True, True, False]
    assert valid(observation)[-2:] == [*ids("good"), EOS]


def test_guess_number_replies():
    game = GuessNumber()
    state = {"target": 7}
    game.start(state)
    assert state["solved"] is False
    assert game.reply(" 3\n", state) == Reply("higher")
    assert game.reply("I guess 12", state) == Reply("lower")
    assert game.reply("no idea", state) == Reply("please answer with a number")
    assert game.reply(" 7 or 8", state) == Reply("correct", done=True) and state["solved"]
    words = GuessNumber(reader="word_count", replies={"higher": "too short"})
    assert words.reply("good fun", {"target": 3}) == Reply("too short")
    assert words.read("") == 0


def test_guess_number_score_by_hand():
    score = get_reward("guess_number", turn_cost=0.1)
    # eq. 46: solved at turn 1 → 1; at turn 3 → 1 − 0.1·2 = 0.8; unsolved after 5 → 0.
    assert score(
        prompts=["p"] * 3, completions=["c"] * 3, solved=[True, True, False], turns=[1, 3, 5]
    ) == pytest.approx([1.0, 0.8, 0.0])
    with pytest.raises(ValueError, match="'solved' and 'turns'"):
        score(prompts=["p"], completions=["c"])
    with pytest.raises(RewardPluginError, match="turn_cost"):
        get_reward("guess_number", turn_cost=1.5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"turn_end": ("good fun",)}, "exactly one token"),
        ({"partner": "nobody"}, "unknown partner"),
        ({"partner": object()}, "start\\(state\\) and reply"),
        ({"reply_template": "no slot"}, "\\{reply\\}"),
        ({"max_turns": 0}, "max_turns"),
        ({"partner": {"name": "guess_number", "reader": "letters"}}, "reader must be"),
        ({"prompts": ["you and i"]}, "column 'target'"),
    ],
)
def test_bad_multi_turn_settings_are_clear_errors(overrides, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_guess(**overrides).reset(seed=0)


def test_build_partner_from_module_path():
    partner = build_partner({"name": "rlhf_env.envs.guess_number:GuessNumber", "reader": "number"})
    assert isinstance(partner, GuessNumber) and partner.reader == "number"


def test_sampler_extends_its_cache_by_the_inserted_tokens_and_matches_a_full_recompute():
    """The sampler's log-probs after environment tokens equal a full forward of the policy, and
    its cache is re-encoded only for new episodes, never for an inserted reply."""
    policy = tiny_model(seed=1)
    eos_bonus = torch.zeros(len(tiny_tokenizer()))
    eos_bonus[EOS] = 3.0  # turns of a few tokens, so that the environment often replies
    policy.lm_head.register_forward_hook(lambda module, inputs, logits: logits + eos_bonus)
    envs = gym.make_vec(
        "rlhf_env/TinyGuess-v0", num_envs=3, vectorization_mode="vector_entry_point"
    )
    sampler = LMSampler(policy, 3, seed=0)
    restarted = []
    reset_rows = sampler.kv.reset_rows
    sampler.kv.reset_rows = lambda rows, streams: (
        restarted.extend(rows),
        reset_rows(rows, streams),
    )
    observation, _ = envs.reset(seed=0)
    fresh = np.ones(3, bool)  # rows whose observation is a new episode's prompt
    ended = np.zeros(3, bool)
    inserted = 0
    for _ in range(40):
        restarted.clear()
        actions = sampler.act(observation)
        assert sorted(restarted) == np.flatnonzero(fresh).tolist()
        for row, action in enumerate(actions):
            n = observation["attention_mask"][row].sum()
            with torch.no_grad():
                logits = policy(torch.as_tensor(observation["input_ids"][row, :n][None])).logits
            expected = torch.log_softmax(logits[0, -1], -1)[int(action)].item()
            assert action.logprob == pytest.approx(expected, abs=1e-5)
        observation, _, terminated, truncated, info = envs.step(actions)
        inserted += int(info["env_tokens"].sum())
        fresh, ended = ended, terminated | truncated  # ended rows restart at the next step
    assert inserted > 0

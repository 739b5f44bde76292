"""Multi-turn episodes in training: the environment's tokens are context in the rows, but out of
the policy loss, the KL term and the value targets (docs/formulation.md eq. 44); PPO and GRPO
run end to end on the tiny multi-turn task."""

import json
import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

from agents.core.columns import (
    ACTION_LOGP,
    ACTIONS,
    ATTENTION_MASK,
    ENV_TOKENS,
    INPUT_IDS,
    LOSS_MASK,
    REF_LOGP,
    REWARDS,
)
from agents.core.episode_rows import episode_rows
from agents.driver.loop import train
from agents.grpo.loss import grpo_loss
from agents.ppo.loss import ppo_loss
from rlhf_env.envs.env import observation_space

VOCAB, WIDTH, EOS = 40, 10, 1
PROMPT = [5, 6]


def episode(steps):
    """An episode from (action, log-prob, reward, ref log-prob, tokens the environment appended)
    steps, its observations built as the environment builds them."""
    space = observation_space(VOCAB, WIDTH)
    built = SingleAgentEpisode(observation_space=space, action_space=spaces.Discrete(VOCAB))
    stream = list(PROMPT)

    def observation():
        ids = np.zeros(WIDTH, np.int64)
        ids[: len(stream)] = stream
        return {"input_ids": ids, "attention_mask": (np.arange(WIDTH) < len(stream)).astype(int)}

    built.add_env_reset(observation=observation())
    for i, (action, logprob, reward, ref, inserted) in enumerate(steps):
        stream += [action, *inserted]
        built.add_env_step(
            observation=observation(),
            action=action,
            reward=reward,
            terminated=i == len(steps) - 1,
            extra_model_outputs={
                ACTION_LOGP: np.float32(logprob),
                REF_LOGP: np.float32(ref),
                ENV_TOKENS: np.int64(len(inserted)),
            },
        )
    return built.to_numpy()


# Turn 1 is "10 <eos>", the environment answers "20 21", turn 2 is "11 <eos>".
MULTI_TURN = [
    (10, -1.0, -0.1, -1.5, []),
    (EOS, -0.5, -0.2, -0.7, [20, 21]),
    (11, -2.0, -0.3, -1.0, []),
    (EOS, -0.25, 0.9, -0.5, []),
]
SINGLE_TURN = [(12, -1.0, 0.1, -1.1, []), (EOS, -0.5, 0.7, -0.4, [])]


def test_rows_hold_the_environment_tokens_as_masked_context():
    rows = episode_rows([episode(MULTI_TURN), episode(SINGLE_TURN)])
    assert rows[ACTIONS].tolist() == [[10, EOS, 20, 21, 11, EOS], [12, EOS, 0, 0, 0, 0]]
    assert rows[LOSS_MASK].tolist() == [
        [True, True, False, False, True, True],
        [True, True, False, False, False, False],
    ]
    # The policy attends to the environment's tokens: the prompt (width 2), then the stream.
    assert rows[ATTENTION_MASK].tolist() == [[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0]]
    assert rows[INPUT_IDS][0].tolist() == [*PROMPT, 10, EOS, 20, 21, 11, EOS]
    # Each step's columns sit at its own token, 0 at the environment's.
    torch.testing.assert_close(
        rows[ACTION_LOGP][0], torch.tensor([-1.0, -0.5, 0.0, 0.0, -2.0, -0.25])
    )
    torch.testing.assert_close(rows[REWARDS][0], torch.tensor([-0.1, -0.2, 0.0, 0.0, -0.3, 0.9]))
    torch.testing.assert_close(rows[REF_LOGP][0], torch.tensor([-1.5, -0.7, 0.0, 0.0, -1.0, -0.5]))
    torch.testing.assert_close(rows[REWARDS][1], torch.tensor([0.1, 0.7, 0.0, 0.0, 0.0, 0.0]))


def test_environment_tokens_are_out_of_the_policy_loss_and_the_kl_term():
    """Whatever the policy's log-prob, advantage, value or reference log-prob at the
    environment's tokens (here garbage), the PPO and GRPO losses equal those over the agent's
    tokens alone, computed by hand."""
    rows = episode_rows([episode(MULTI_TURN)])
    mask = rows[LOSS_MASK]
    agent = mask[0]
    garbage = torch.tensor([[0.0, 0.0, 50.0, -50.0, 0.0, 0.0]])
    logprobs = (rows[ACTION_LOGP] + 0.1 * agent + garbage).requires_grad_()  # ratio e^0.1
    advantages = torch.tensor([[1.0, -1.0, 9.0, 9.0, 2.0, 0.5]])
    values = torch.tensor([[0.5, 0.4, 7.0, 7.0, 0.3, 0.2]])
    returns = torch.tensor([[1.0, 1.0, 8.0, 8.0, 1.0, 1.0]])
    loss, stats = ppo_loss(
        logprobs, rows[ACTION_LOGP], advantages, values, values, returns, mask, None,
        clip_eps=0.2, vf_coef=0.1, ent_coef=0.0, value_clip=None,
    )  # fmt: skip
    ratio = math.exp(0.1)  # inside the clip range 1 ± 0.2
    a = [1.0, -1.0, 2.0, 0.5]
    actor = -sum(ratio * x for x in a) / 4
    critic = 0.5 * ((0.5 - 1) ** 2 + (0.4 - 1) ** 2 + (0.3 - 1) ** 2 + (0.2 - 1) ** 2) / 4
    assert loss.item() == pytest.approx(actor + 0.1 * critic, abs=1e-6)
    loss.backward()
    assert not logprobs.grad[0, ~agent].any()  # no gradient reaches the environment's tokens

    ref = rows[REF_LOGP] + torch.tensor([[0.0, 0.0, float("nan"), 3.0, 0.0, 0.0]])
    _, grpo_stats = grpo_loss(
        logprobs.detach(), rows[ACTION_LOGP], torch.tensor([1.0]), mask,
        ref_logprobs=ref, kl_coef=0.1,
    )  # fmt: skip
    # k3 of log π_ref − log π_θ at the agent's four tokens only (eq. 5).
    d = [-1.5 - (-0.9), -0.7 - (-0.4), -1.0 - (-1.9), -0.5 - (-0.15)]
    k3 = [math.expm1(x) - x for x in d]
    assert grpo_stats["kl"].item() == pytest.approx(sum(k3) / 4, abs=1e-6)
    assert stats["ratio_mean"].item() == pytest.approx(ratio, abs=1e-6)


@pytest.mark.parametrize(
    "preset, batch",
    [
        ("configs/ppo_tiny.yaml", "ppo.episodes_per_iteration=16"),
        ("configs/grpo_tiny.yaml", "grpo.prompts_per_iteration=4"),
    ],
)
def test_ppo_and_grpo_train_on_the_tiny_multi_turn_task(tiny_config, preset, batch):
    config = tiny_config(
        "task.id=rlhf_env/TinyGuess-v0",
        batch,
        "run.iterations=2",
        "run.checkpoint_every=0",
        "run.eval_episodes=8",
        preset=preset,
    )
    records = train(config, progress=False)
    assert [r["iteration"] for r in records] == [1, 2]
    for key in ("reward/score", "reward/kl", "reward/guess_number"):
        assert np.isfinite(records[-1][key]), key
    evals = [json.loads(line) for line in (config.run_dir / "eval.jsonl").read_text().splitlines()]
    assert all(np.isfinite(e["eval/score"]) for e in evals)


def test_sampler_and_learner_agree_on_multi_turn_rows(tiny_config, build_algo):
    """The learner's one forward per row, over the agent's and the environment's tokens, gives
    the sampler's log-probs at the agent's tokens: the rows line up with what was sampled."""
    algo = build_algo(tiny_config("task.id=rlhf_env/TinyGuess-v0"))
    runner = algo.env_runner_group.local_env_runner
    episodes = []
    for _ in range(20):  # until an episode has an environment turn (a random policy's EOS)
        episodes += runner.sample()
        if any(np.any(e.get_extra_model_outputs(ENV_TOKENS)) for e in episodes):
            break
    rows = episode_rows(episodes)
    assert (~rows[LOSS_MASK] & rows[ATTENTION_MASK][:, -rows[ACTIONS].shape[1] :].bool()).any()
    module = algo.learner_group._learner.module["default_policy"]
    with torch.no_grad():
        logits = module.forward_train(rows)["action_dist_inputs"]
    logprobs = torch.log_softmax(logits, -1).gather(-1, rows[ACTIONS][..., None])[..., 0]
    mask = rows[LOSS_MASK]
    torch.testing.assert_close(logprobs[mask], rows[ACTION_LOGP][mask], rtol=0, atol=1e-5)


def test_online_dpo_refuses_multi_turn_episodes():
    from agents.dpo.connector import PreferencePairConnector

    with pytest.raises(ValueError, match="train it with PPO or GRPO"):
        PreferencePairConnector()(rl_module=None, batch={}, episodes=[episode(MULTI_TURN)])

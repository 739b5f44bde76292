"""Reward functions written as TRL's GRPOTrainer documentation writes them work unchanged.

TRL calls each reward with ``prompts``, ``completions``, ``completion_ids``, every other dataset
column, ``trainer_state``, ``log_extra`` and ``log_metric``; its documented examples take only
what they use and ``**kwargs``. The functions below follow those documented forms (the first is
the one the issue quotes); TRL's own shipped rewards are run unchanged when TRL is installed
(the ``bench`` extra).
"""

import asyncio
import re

import datasets
import gymnasium as gym
import pytest

import rlhf_env  # noqa: F401  (registers the tasks)
from rewards import build_reward, check_reward, get_reward
from rewards.protocol import TrainerState
from rlhf_env.data.tiny import tiny_tokenizer


def reward_func(completion_ids, **kwargs):
    """Reward function that assigns higher scores to longer completions (in token count)."""
    return [float(len(ids)) for ids in completion_ids]


def format_reward_func(completions, **kwargs):
    """Conversational: 1.0 when the assistant's message starts with "good", else 0.0."""
    pattern = r"^good\b.*"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, content) for content in completion_contents]
    return [1.0 if match else 0.0 for match in matches]


def accuracy_reward_func(completions, ground_truth, **kwargs):
    """A dataset column arrives under its own name: 1.0 when the answer holds it."""
    contents = [completion[0]["content"] for completion in completions]
    return [1.0 if gt in content else 0.0 for content, gt in zip(contents, ground_truth)]


def curriculum_reward(completions, trainer_state, **kwargs):
    """Reward shaping from the training progress: the global step itself."""
    return [float(trainer_state.global_step)] * len(completions)


def logging_reward(completions, log_extra=None, log_metric=None, **kwargs):
    """Logs a column and a metric through TRL's callbacks."""
    lengths = [len(c[0]["content"]) for c in completions]
    if log_extra:
        log_extra("char_length", lengths)
    if log_metric:
        log_metric("mean_chars", sum(lengths) / len(lengths))
    return [0.0] * len(completions)


async def async_reward(completions, **kwargs):
    """An ``async def`` reward (e.g. a remote judge), awaited by the environment."""
    await asyncio.sleep(0)
    return [0.5] * len(completions)


def tiny_ids(*words):
    return [tiny_tokenizer().convert_tokens_to_ids(w) for w in words]


def test_documented_rewards_run_in_the_environment_unchanged():
    prompts = datasets.Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": "the movie was"}]],
            "ground_truth": ["great"],
        }
    )
    env = gym.make(
        "rlhf_env/Tiny-v0",
        prompts=prompts,
        split="all",
        max_new_tokens=3,
        max_prompt_tokens=8,
        reward=[
            reward_func,
            format_reward_func,
            accuracy_reward_func,
            curriculum_reward,
            logging_reward,
            async_reward,
        ],
    ).unwrapped
    env.global_step = 7  # what an agent sets before each training iteration
    env.reset(seed=0)
    for token in tiny_ids("good", "and", "great"):
        *_, info = env.step(token)
    assert info["reward_components"] == {
        "reward_func": 3.0,
        "format_reward_func": 1.0,
        "accuracy_reward_func": 1.0,
        "curriculum_reward": 7.0,
        "logging_reward": 0.0,
        "async_reward": 0.5,
    }
    assert info["score"] == pytest.approx(12.5)
    assert info["reward_log"] == {"char_length": 14, "mean_chars": 14.0}


def test_completion_ids_are_the_response_tokens():
    seen = []

    def record_ids(completion_ids, **kwargs):
        seen.extend(completion_ids)
        return [0.0] * len(completion_ids)

    env = gym.make("rlhf_env/Tiny-v0", reward=record_ids, max_new_tokens=4).unwrapped
    env.reset(seed=0)
    tokens = tiny_ids("good", "fun", "<eos>")
    for token in tokens:
        env.step(token)
    assert seen == [tokens]  # the end-of-sequence token is part of the response, as in TRL


def test_the_documentation_spelling_completions_ids_works_too():
    """TRL's reward documentation names the argument ``completions_ids``; its trainer passes
    ``completion_ids``. The environment passes both, so either form runs unchanged."""

    def documented_length(completions_ids, **kwargs):
        """Longer completions score higher (in token count), the documentation's form."""
        return [float(len(ids)) for ids in completions_ids]

    env = gym.make("rlhf_env/Tiny-v0", reward=documented_length, max_new_tokens=4).unwrapped
    env.reset(seed=0)
    for token in tiny_ids("good", "fun", "<eos>"):
        *_, info = env.step(token)
    assert info["score"] == 3.0
    check_reward(documented_length)


def test_global_step_is_settable_on_the_vector_env():
    envs = gym.make_vec("rlhf_env/Tiny-v0", num_envs=2, vectorization_mode="vector_entry_point")
    envs.unwrapped.global_step = 3
    assert envs.unwrapped.batch.trainer_state == TrainerState(global_step=3)


def test_async_reward_errors_name_the_reward():
    async def broken(completions, **kwargs):
        raise RuntimeError("judge unreachable")

    with pytest.raises(Exception, match="reward 'broken' raised RuntimeError: judge unreachable"):
        build_reward(broken).score(["p"], ["c"])


def test_async_reward_inside_a_running_event_loop():
    async def caller():
        return build_reward(async_reward).score(["p"], ["c"])

    assert asyncio.run(caller()) == ([0.5], {"async_reward": [0.5]})


def test_documented_rewards_pass_the_conformance_check():
    check_reward(reward_func)
    check_reward(async_reward)


def test_trl_shipped_rewards_unchanged():
    trl_rewards = pytest.importorskip("trl.rewards")
    think = [
        [{"role": "assistant", "content": "<think>\nreasoning\n</think>\nanswer"}],
        [{"role": "assistant", "content": "no reasoning"}],
    ]
    reward = build_reward(trl_rewards.think_format_reward)
    totals, _ = reward.score(
        [[{"role": "user", "content": "q"}]] * 2,
        think,
        completion_ids=[[1, 2], [3]],
        trainer_state=TrainerState(),
    )
    assert totals == [1.0, 0.0]
    # TRL's DAPO soft overlong punishment equals our overlong_penalty built-in.
    ids = [[1] * n for n in (70, 80, 90, 100, 101)]
    trl_overlong = trl_rewards.get_soft_overlong_punishment(
        max_completion_len=100, soft_punish_cache=20
    )
    ours = get_reward("overlong_penalty", max_tokens=100, cache_tokens=20)
    expected = [0.0, 0.0, -0.5, -1.0, -1.0]
    assert build_reward(trl_overlong).score([""] * 5, [""] * 5, completion_ids=ids)[0] == expected
    assert ours(prompts=[""] * 5, completions=[""] * 5, completion_ids=ids) == expected


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("vader", {}),
        ("length", {"target": 3}),
        ("keyword", {"keywords": ["sun"]}),
        ("regex", {"pattern": r"^\w+ sun"}),
        ("repetition_penalty", {}),
    ],
)
def test_builtins_score_a_conversation_as_its_text(name, params):
    reward = get_reward(name, **params)
    texts = ["the sun is out", "rain rain rain rain"]
    conversational = [[{"role": "assistant", "content": text}] for text in texts]
    prompts = [[{"role": "user", "content": "weather?"}]] * 2
    assert reward(prompts=prompts, completions=conversational) == reward(
        prompts=["weather?"] * 2, completions=texts
    )


def test_a_prompt_column_may_not_shadow_a_reward_argument():
    prompts = datasets.Dataset.from_dict({"prompt": ["the movie was"], "completion_ids": [[1]]})
    with pytest.raises(ValueError, match=r"column\(s\) \['completion_ids'\].*rename them"):
        gym.make("rlhf_env/Tiny-v0", prompts=prompts, split="all")


def test_async_rewards_of_a_batch_run_concurrently():
    """Each async reward yields to the loop once: awaited together, each sees the other start
    before it finishes (awaited one after the other, the first would not)."""
    started = []

    def overlapping(name, other):
        async def reward(completions, **kwargs):
            started.append(name)
            await asyncio.sleep(0)
            return [1.0 if other in started else 0.0] * len(completions)

        reward.__name__ = name
        return reward

    _, components = build_reward(
        [overlapping("first", "second"), overlapping("second", "first")]
    ).score(["p"], ["c"])
    assert components == {"first": [1.0], "second": [1.0]}


def test_task_specific_rewards_return_none_where_they_do_not_apply():
    """TRL's multi-task form: a column says which reward applies; the others return None."""

    def sentiment_task_reward(prompts, completions, task, **kwargs):
        return [
            float(len(c.split())) if t == "sentiment" else None for c, t in zip(completions, task)
        ]

    def story_task_reward(prompts, completions, task, **kwargs):
        return [1.0 if t == "story" else None for t in task]

    prompts = datasets.Dataset.from_dict(
        {"prompt": ["the movie was", "the story is"], "task": ["sentiment", "story"]}
    )
    envs = gym.make_vec(
        "rlhf_env/Tiny-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        prompts=prompts,
        split="all",
        max_new_tokens=2,
        reward=[sentiment_task_reward, story_task_reward],
    )
    envs.reset(options={"prompt_indices": [0, 1]})
    for _ in range(2):
        *_, infos = envs.step(tiny_ids("good", "good"))
    assert infos["score"].tolist() == [2.0, 1.0]  # None adds 0 to the weighted sum
    components = infos["reward_components"]
    assert components["sentiment_task_reward"].tolist() == [2.0, 0.0]
    assert components["story_task_reward"].tolist() == [0.0, 1.0]

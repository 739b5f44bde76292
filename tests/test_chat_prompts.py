"""Conversational prompts (TRL's format) through the chat template, and what rewards see."""

import copy
import json

import gymnasium as gym
import pytest

import rlhf_env  # noqa: F401  (registers the tasks)
from rlhf_env.data.prompts import load_prompts
from rlhf_env.data.tables import DataFileError
from rlhf_env.data.tiny import tiny_tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "the movie was"}],
    [{"role": "system", "content": "so nice"}, {"role": "user", "content": "the story is"}],
]


def words(ids):
    return tiny_tokenizer().convert_ids_to_tokens([int(i) for i in ids])


def prompt_words(observation):
    return words(observation["input_ids"][observation["attention_mask"] == 1])


def recording_reward():
    def recorded(prompts, completions, **kwargs):
        recorded.calls.append({"prompts": prompts, "completions": completions, **kwargs})
        return [1.0] * len(completions)

    recorded.calls = []
    return recorded


def make_tiny(**kwargs):
    return gym.make("rlhf_env/Tiny-v0", max_new_tokens=2, **kwargs).unwrapped


def test_conversations_load_from_jsonl_with_their_split(tmp_path):
    path = tmp_path / "chat.jsonl"
    rows = [{"prompt": [{"role": "user", "content": f"say {i}"}], "n": i} for i in range(20)]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    test = load_prompts(str(path), split="test")
    assert test.conversational
    assert test.prompts == [rows[0]["prompt"], rows[10]["prompt"]]
    assert test.columns == {"n": [0, 10]}
    assert not load_prompts(["the movie was"]).conversational


def test_a_source_holds_one_kind_of_prompt():
    with pytest.raises(DataFileError, match="mixes texts and conversations"):
        load_prompts(["the movie was", CONVERSATIONS[0]])
    with pytest.raises(ValueError, match=r"a list of \{'role': ..., 'content': ...\} messages"):
        load_prompts([[{"text": "no role"}]])


def test_conversations_are_templated_and_rewards_get_messages():
    reward = recording_reward()
    env = make_tiny(prompts=CONVERSATIONS, reward=reward, max_prompt_tokens=12)
    assert env.batch.chat_template  # "auto": conversations and a tokenizer with a template
    observation, info = env.reset(options={"prompt_index": 1})
    # The tiny template by hand: "we so nice you the story is " + the generation prompt "i"
    assert prompt_words(observation) == ["we", "so", "nice", "you", "the", "story", "is", "i"]
    assert info["prompt"] == CONVERSATIONS[1]
    token = tiny_tokenizer().convert_tokens_to_ids("good")
    *_, info = env.step(token)
    *_, info = env.step(token)
    (call,) = reward.calls
    assert call["prompts"] == [CONVERSATIONS[1]]
    assert call["completions"] == [[{"role": "assistant", "content": "good good"}]]
    assert info["completion"] == "good good"


def test_text_prompts_stay_text_under_auto_and_are_wrapped_under_true():
    reward = recording_reward()
    plain = make_tiny(reward=reward)  # Tiny-v0's text prompts: "auto" leaves them as they are
    assert not plain.batch.chat_template
    observation, _ = plain.reset(options={"prompt": "the movie was"})
    assert prompt_words(observation) == ["the", "movie", "was"]
    chat = make_tiny(reward=reward, chat_template=True)
    observation, _ = chat.reset(options={"prompt": "the movie was"})
    assert prompt_words(observation) == ["you", "the", "movie", "was", "i"]
    token = tiny_tokenizer().convert_tokens_to_ids("fun")
    chat.step(token)
    chat.step(token)
    assert reward.calls[-1]["completions"] == ["fun fun"]  # a text prompt keeps text completions


def test_prompt_length_counts_the_templated_tokens():
    env = make_tiny(prompts=["the movie was good"], chat_template=True, max_prompt_tokens=5)
    with pytest.raises(ValueError, match=r"prompt has 6 tokens \(with the chat template\)"):
        env.reset()
    # The same text without the template is 4 tokens, which fits.
    plain = make_tiny(prompts=["the movie was good"], chat_template=False, max_prompt_tokens=5)
    plain.reset()


def test_chat_template_settings_that_cannot_work_are_errors():
    with pytest.raises(ValueError, match="prompts are conversations but chat_template=False"):
        make_tiny(prompts=CONVERSATIONS, chat_template=False)
    with pytest.raises(ValueError, match=r"chat_template must be one of \('auto', True, False\)"):
        make_tiny(chat_template="yes")
    bare = copy.deepcopy(tiny_tokenizer())
    bare.chat_template = None
    with pytest.raises(ValueError, match="has no chat template, needed for conversational"):
        make_tiny(prompts=CONVERSATIONS, tokenizer=bare)
    with pytest.raises(ValueError, match="has no chat template, needed for chat_template=True"):
        make_tiny(tokenizer=bare, chat_template=True)
    env = make_tiny(chat_template=False)
    with pytest.raises(ValueError, match="a conversational prompt needs the chat template"):
        env.reset(options={"prompt": CONVERSATIONS[0]})


def test_vector_env_carries_conversations():
    reward = recording_reward()
    envs = gym.make_vec(
        "rlhf_env/Tiny-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        prompts=CONVERSATIONS,
        reward=reward,
        max_new_tokens=1,
        max_prompt_tokens=12,
    )
    envs.reset(options={"prompt_indices": [0, 1]})
    *_, infos = envs.step([tiny_tokenizer().convert_tokens_to_ids("good")] * 2)
    assert list(infos["prompt"]) == CONVERSATIONS
    assert reward.calls[0]["prompts"] == CONVERSATIONS
    assert reward.calls[0]["completions"] == [[{"role": "assistant", "content": "good"}]] * 2


@pytest.mark.slow
def test_smollm2_real_chat_template():
    from rlhf_env.data.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    conversation = [{"role": "user", "content": "Name a colour."}]
    env = gym.make(
        "rlhf_env/TextGen-v0",
        prompts=[conversation],
        reward="repetition_penalty",
        reference=False,
        kl_coef=0.0,
        max_new_tokens=2,
    ).unwrapped
    observation, _ = env.reset()
    ids = observation["input_ids"][observation["attention_mask"] == 1].tolist()
    expected = tokenizer.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    assert ids == list(expected)
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n")

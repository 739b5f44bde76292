"""The token-level RLHF environment (docs/formulation.md eqs. 1-6; multi-turn: eq. 44)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlhf_env.envs.task import TaskSpec


def observation_space(vocab_size: int, width: int) -> spaces.Dict:
    """Token ids of prompt + response, right-padded to ``width``, with an explicit mask."""
    return spaces.Dict(
        {
            "input_ids": spaces.Box(0, vocab_size - 1, (width,), np.int64),
            "attention_mask": spaces.Box(0, 1, (width,), np.int64),
        }
    )


class TextGenEnv(gym.Env):
    """
    ## Description

    Text generation as a token-level MDP, the RLHF formulation of InstructGPT and of
    docs/formulation.md (eqs. 1-5). The state is a prompt plus the response generated so
    far; each action appends one token; the reward of each token is minus β times a KL estimate
    against a frozen reference model, and the last token also receives the score of the reward
    plugin(s) on the whole response. The reference model is evaluated incrementally with a KV
    cache, so a step costs one single-token forward whatever the prefix length.

    ## Action Space

    ``Discrete(vocab_size)``: the id of the next token. To get the KL term right, an agent passes
    the log-prob it sampled the token with as a :class:`rlhf_env.TokenAction` (an ``int`` subclass:
    ``env.step(TokenAction(token, logprob))``). A plain int is accepted too: the environment then
    treats the agent as equal to the reference for that token (KL term 0, so the reward is the
    score alone) and sets ``info["logprob_supplied"] = False``. Non-integer, out-of-range and
    non-finite or positive log-probs raise an error.

    ## Observation Space

    ``Dict(input_ids=Box(0, vocab_size-1, (W,), int64), attention_mask=Box(0, 1, (W,), int64))``
    with ``W = max_prompt_tokens + max_new_tokens``: the prompt's tokens, then the response's,
    right-padded with the pad id; ``attention_mask`` is 1 on real tokens. The prompt is the valid
    part of the observation returned by ``reset``.

    ## Rewards

    With ``d_t = log π_old(a_t|s_t) − log π_ref(a_t|s_t)`` and the estimator ``k`` (``k1 = d``,
    ``k2 = ½d²``, ``k3 = (e^{−d} − 1) + d``): ``r_t = −β·k(d_t)`` for every token, and
    ``r_N = −β·k(d_N) + score(prompt, response)`` for the last token, delivered at that step. β is
    ``kl_coef`` and may be changed between steps (``env.unwrapped.kl_coef = 0.1``).

    The reward plugins are called as TRL's GRPOTrainer calls them (:mod:`rewards.protocol`):
    ``prompts``, ``completions`` (for conversational prompts, one assistant message each),
    ``completion_ids``, every extra column of the prompt source, ``trainer_state`` (its
    ``global_step`` is the training iteration an agent sets, ``env.unwrapped.global_step = n``),
    ``log_extra`` and ``log_metric``. ``async def`` rewards are awaited.

    ## Starting State

    A prompt drawn uniformly from the prompt source with ``self.np_random`` (reproducible with
    ``reset(seed=...)``); ``options={"prompt": ...}`` forces a prompt (a text or a conversation)
    and ``options={"prompt_index": i}`` picks one. A prompt is a text, or a conversation in TRL's
    conversational format (a list of ``{"role", "content"}`` messages); with ``chat_template``
    (by default: conversations and a tokenizer with a template) it is encoded through the
    tokenizer's chat template with the generation prompt.

    ## Episode End

    1. Termination: the agent emits an end-of-sequence token (the tokenizer's or the model's).
    2. Truncation: the response reaches ``max_new_tokens`` tokens.

    Multi-turn: termination when the partner ends the episode or after ``max_turns`` turns;
    truncation when the response stream leaves no room for the partner's reply and another
    agent token.

    ## Information

    Every step: ``ref_logprob``, ``logprob`` (the sampling log-prob used), ``logprob_supplied``,
    ``kl`` (the estimate k(d_t)), ``kl_coef`` and ``env_tokens`` (how many tokens a multi-turn
    environment appended after this action; 0 otherwise). At the episode's end also: ``score``
    (the weighted plugin score), ``reward_components`` (each plugin's unweighted score by name),
    ``episode_kl``, ``episode_return``, ``response_length`` (the agent's tokens), ``agent_mask``
    (``max_new_tokens`` booleans: True at the agent's tokens of the response stream),
    ``prompt`` (text or conversation), ``completion`` (the whole stream's text, the
    environment's turns included), ``agent_completion`` (the agent's tokens' text alone; the
    completion, single-turn) and ``reward_log`` (what the rewards recorded with ``log_extra``
    and ``log_metric``).

    ## Multi-turn episodes

    With a ``partner`` (:mod:`rlhf_env.envs.turns`), EOS or a ``turn_end`` token ends the
    agent's *turn*, not the episode: the partner reads the turn and either ends the episode
    (termination; also after ``max_turns`` turns) or replies, and the reply's tokens are appended
    to the observation within the same step. They are observations, never actions: no step, no
    reward, no KL term of their own; ``info["env_tokens"]`` counts them and trainers mask them
    out of the policy loss, the KL term and the value targets (docs/formulation.md eq. 44).
    ``max_new_tokens`` bounds the whole response stream, both sides' tokens.

    ## Arguments

    ```python
    import gymnasium as gym
    env = gym.make("rlhf_env/Sentiment-v0", max_new_tokens=16, kl_coef=0.05, render_mode="ansi")
    env = gym.make("rlhf_env/TextGen-v0", prompts="my_prompts.jsonl", model="Qwen/Qwen2.5-0.5B",
                   reward=[{"name": "vader"}, {"name": "repetition_penalty", "weight": 0.5}])
    envs = gym.make_vec("rlhf_env/Sentiment-v0", num_envs=16)  # batched form, one forward a step
    env = gym.make("rlhf_env/Instruct-v0", split="test")  # verifiable checks, held-out prompts
    env = gym.make("rlhf_env/TextGen-v0", reward="vader",  # a conversation, chat-templated
                   prompts=[[{"role": "user", "content": "Say something kind."}]])
    env = gym.make("rlhf_env/Tiny-v0")  # a tiny random model: milliseconds a step, for tests
    env = gym.make("rlhf_env/GuessNumber-v0")  # multi-turn: the environment answers each guess
    env = gym.make("rlhf_env/TextGen-v0", prompts="my_games.jsonl", reward="my_pkg:score",
                   partner="my_pkg.games:Referee", max_turns=4, turn_end=["\\n"])
    ```

    ``prompts``, ``model``, ``reward``, ``tokenizer``, ``prompt_field``, ``chat_template``,
    ``split``, ``max_prompt_tokens``, ``max_new_tokens``, ``kl_coef``, ``kl_estimator``,
    ``reference_dtype``, ``partner``, ``max_turns``, ``turn_end`` and ``reply_template`` are
    documented on :class:`rlhf_env.envs.task.TaskSpec`; ``render_mode``
    may be ``"ansi"``.

    ## Version History

    * v0: Initial version.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, render_mode: str | None = None, **task: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.spec_args = TaskSpec(**task)
        self.batch, self.prompts = self.spec_args.build(num_rows=1)
        self.action_space = spaces.Discrete(self.batch.vocab_size)
        self.observation_space = observation_space(
            self.batch.vocab_size, self.batch.input_ids.shape[1]
        )
        self._needs_reset = True

    @property
    def kl_coef(self) -> float:
        """β of the KL penalty, read and set at run time (e.g. by an adaptive KL controller)."""
        return self.batch.kl_coef

    @kl_coef.setter
    def kl_coef(self, value: float) -> None:
        self.batch.kl_coef = float(value)

    @property
    def global_step(self) -> int:
        """The training iteration, set by the agent; rewards read it as
        ``trainer_state.global_step``."""
        return self.batch.trainer_state.global_step

    @global_step.setter
    def global_step(self, value: int) -> None:
        self.batch.trainer_state.global_step = int(value)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        text, extras = pick_prompt(self.prompts, self.np_random, options or {})
        self.batch.start([0], [text], [extras])
        self._needs_reset = False
        return self.batch.observation(0), {"prompt": text}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("the episode has ended (or never started): call reset() first")
        result = self.batch.step([action], active=np.ones(1, bool))
        info = {
            "ref_logprob": float(result.ref_logprob[0]),
            "logprob": float(result.logprob[0]),
            "logprob_supplied": bool(result.logprob_supplied[0]),
            "kl": float(result.kl[0]),
            "kl_coef": self.kl_coef,
            "env_tokens": int(result.env_tokens[0]),
        }
        if result.finished:
            info.update(self.batch.final_info(0))
            self._needs_reset = True
        return (
            self.batch.observation(0),
            float(result.rewards[0]),
            bool(result.terminated[0]),
            bool(result.truncated[0]),
            info,
        )

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.batch.render(0)
        return None


def pick_prompt(prompts, rng: np.random.Generator, options: dict) -> tuple[str, dict]:
    """The prompt an episode starts from: forced by ``options`` or drawn with ``rng``."""
    if "prompt" in options:
        return options["prompt"], {}
    index = options.get("prompt_index")
    if index is None:
        index = int(rng.integers(len(prompts)))
    elif not 0 <= index < len(prompts):
        raise IndexError(f"prompt_index {index} out of range: there are {len(prompts)} prompts")
    return prompts.prompts[index], prompts.row(index)

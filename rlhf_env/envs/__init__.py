"""Layer 2 of rlhf-env: the Gymnasium environments, and the registration of every task.

As Gymnasium's own ``envs/__init__.py``: a flat list of ``register`` calls with string entry
points, so nothing heavy is imported until an environment is made. A task's keyword arguments
here are its defaults, the one place they are set; ``gym.make(id, **overrides)`` and a training
config's ``task.overrides`` change only what they name.
"""

from gymnasium.envs.registration import register

_ENTRY = "rlhf_env.envs.env:TextGenEnv"
_VECTOR_ENTRY = "rlhf_env.envs.vector:TextGenVectorEnv"

# Continue real movie-review openings; VADER sentiment of the continuation is the score.
register(
    id="rlhf_env/Sentiment-v0",
    entry_point=_ENTRY,
    vector_entry_point=_VECTOR_ENTRY,
    kwargs=dict(
        prompts="movie-reviews",
        model="smollm2-135m-instruct",
        reward="vader",
        max_new_tokens=24,
        kl_coef=0.05,
    ),
)
# Any prompts, model and reward. Defaults: cheer up BSD fortune-cookie openings without
# repeating yourself (shows composition); override every argument for your own task.
register(
    id="rlhf_env/TextGen-v0",
    entry_point=_ENTRY,
    vector_entry_point=_VECTOR_ENTRY,
    kwargs=dict(
        prompts="fortunes",
        model="smollm2-135m-instruct",
        reward=[{"name": "vader"}, {"name": "repetition_penalty", "weight": 1.0}],
        max_new_tokens=32,
        max_prompt_tokens=64,
        kl_coef=0.05,
    ),
)
# A tiny random Llama over a 63-word vocabulary: milliseconds per step, for tests.
register(
    id="rlhf_env/Tiny-v0",
    entry_point=_ENTRY,
    vector_entry_point=_VECTOR_ENTRY,
    kwargs=dict(
        prompts="tiny",
        model="tiny",
        reward="vader",
        max_new_tokens=8,
        max_prompt_tokens=8,
        kl_coef=0.05,
    ),
)
# Follow instructions with verifiable constraints (IFEval style), generated offline: each prompt
# asks for a length, a content and a format constraint; the score is the fraction passed
# (docs/formulation.md eq. 47), each check logged as a reward component. The prompts are
# conversations, so the instruct model's chat template applies.
register(
    id="rlhf_env/Instruct-v0",
    entry_point=_ENTRY,
    vector_entry_point=_VECTOR_ENTRY,
    kwargs=dict(
        prompts="instructions",
        model="smollm2-135m-instruct",
        reward=[
            {"name": "instruction_length", "weight": 1 / 3},
            {"name": "instruction_content", "weight": 1 / 3},
            {"name": "instruction_format", "weight": 1 / 3},
        ],
        max_new_tokens=64,
        max_prompt_tokens=96,
        kl_coef=0.05,
    ),
)
# Multi-turn (rlhf_env/envs/turns.py): guess a secret number from 1 to 10; after each guess
# (a line) the environment answers higher, lower or correct. Score: eq. 46.
register(
    id="rlhf_env/GuessNumber-v0",
    entry_point=_ENTRY,
    vector_entry_point=_VECTOR_ENTRY,
    kwargs=dict(
        prompts="guess-number",
        model="smollm2-135m-instruct",
        reward={"name": "guess_number", "params": {"turn_cost": 0.1}},
        partner="guess_number",
        max_turns=5,
        turn_end=("\n",),
        reply_template="Answer: {reply}\nGuess:",
        max_prompt_tokens=64,
        max_new_tokens=96,
        kl_coef=0.05,
    ),
)
# The same game on the tiny model, for tests: a guess is the number of words of a turn (1-3),
# a turn ends at EOS, and the answers are tiny words.
register(
    id="rlhf_env/TinyGuess-v0",
    entry_point=_ENTRY,
    vector_entry_point=_VECTOR_ENTRY,
    kwargs=dict(
        prompts="tiny-guess",
        model="tiny",
        reward="guess_number",
        partner={
            "name": "guess_number",
            "reader": "word_count",
            "replies": {"higher": "too short", "lower": "too long", "correct": "good"},
        },
        max_turns=3,
        max_prompt_tokens=8,
        max_new_tokens=24,
        kl_coef=0.05,
    ),
)

"""rlhf-env: LLM text generation as a registered, token-level Gymnasium environment.

Importing the package registers the tasks (string entry points: nothing heavy is imported until
an environment is made), so ``gym.make("rlhf_env:rlhf_env/Sentiment-v0")`` works in any fresh
process, remote Ray workers included. This package never imports Ray.
"""

from gymnasium.envs.registration import register

from rlhf_env.actions import TokenAction

__all__ = ["TokenAction", "TASKS"]

_ENTRY = "rlhf_env.env:TextGenEnv"
_VECTOR_ENTRY = "rlhf_env.vector:TextGenVectorEnv"

TASKS = {
    # Continue real movie-review openings; VADER sentiment of the continuation is the score.
    "rlhf_env/Sentiment-v0": dict(
        prompts="movie-reviews", model="smollm2-135m-instruct", reward="vader",
        max_new_tokens=24, kl_coef=0.05,
    ),
    # Any prompts, model and reward. Defaults: cheer up BSD fortune-cookie openings without
    # repeating yourself (shows composition); override every argument for your own task.
    "rlhf_env/TextGen-v0": dict(
        prompts="fortunes", model="smollm2-135m-instruct",
        reward=[{"name": "vader"}, {"name": "repetition_penalty", "weight": 1.0}],
        max_new_tokens=32, max_prompt_tokens=64, kl_coef=0.05,
    ),
    # A tiny random Llama over a 60-word vocabulary: milliseconds per step, for tests.
    "rlhf_env/Tiny-v0": dict(
        prompts="tiny", model="tiny", reward="vader", max_new_tokens=8, max_prompt_tokens=8,
        kl_coef=0.05,
    ),
}

for _id, _kwargs in TASKS.items():
    register(id=_id, entry_point=_ENTRY, vector_entry_point=_VECTOR_ENTRY, kwargs=_kwargs)

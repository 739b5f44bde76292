"""rlhf-env: LLM text generation as a registered, token-level Gymnasium environment.

Importing the package registers the tasks (:mod:`rlhf_env.envs`; string entry points: nothing
heavy is imported until an environment is made), so ``gym.make("rlhf_env:rlhf_env/Sentiment-v0")``
works in any fresh process, remote Ray workers included. This package never imports Ray.

Layers, each importing only those below it: ``rlhf_env.data`` (assets, models, tables, tensor
ops) < ``rewards`` (the reward plugins) < ``rlhf_env.envs`` (the environments) <
``rlhf_env.policy`` (samplers and engines that act in them) < ``agents`` (RLlib).
"""

import rlhf_env.envs  # noqa: F401  (registers the tasks)
from rlhf_env.envs.actions import TokenAction

__all__ = ["TokenAction"]

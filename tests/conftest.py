"""Shared test set-up: torch threads as OMP_NUM_THREADS says (2 by default: the machine has two
cores), caches inside the project."""

import os
from pathlib import Path

import pytest
import torch

_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HOME", str(_ROOT / ".cache" / "huggingface"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


@pytest.fixture
def constant_score():
    """A TRL-style reward plugin returning 0.7 for every completion, counting its calls."""

    def constant(prompts, completions, **kwargs):
        constant.calls.append(list(completions))
        return [0.7] * len(completions)

    constant.calls = []
    return constant

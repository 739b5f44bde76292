"""An RLlib env runner that steps rlhf_env's batched environment with a KV-cached LLM sampler.

RLlib's stock runner runs the module's forward on the full observation at every token (the cost
grows with the prefix) and ships vocabulary-sized logits per token. This runner keeps RLlib's
machinery (module built from the spec, weight sync, metrics, fault tolerance, checkpoints) and
replaces only the sampling loop: the module's policy samples through
:class:`rlhf_env.policy.sampler.LMSampler` (one single-token forward per step for all environments),
each action carries its log-prob to the environment (the KL term) and into the episode as
``ACTION_LOGP`` (PPO's π_old). Nothing vocabulary-sized leaves the runner.

With the module's ``engine: vllm`` the tokens come from an in-process vLLM engine instead
(:mod:`rlhf_env.policy.vllm_engine`: every environment's whole response in one batched call,
handed to the environment token by token). After RLlib syncs new weights into the module, the next
``sample()`` first copies them into the engine and verifies its log-probs against the module's
(a mismatch or a timeout is a :class:`~rlhf_env.policy.vllm_engine.WeightSyncError`).

Every ``sample()`` starts one fresh episode per environment with the current weights and returns
them once all are complete (on-policy; ``batch_mode="complete_episodes"``). With
``config.group_size = k > 1`` (online DPO) the environments come in groups of k that share a
prompt. Each episode keeps its per-token reference log-probs (``REF_LOGP``, from the
environment's info) and, in ``custom_data``, its score, group, the KL coefficient β it was
sampled under, its summed KL, its completion text and its reward components' weighted values
(what the guard measures, :mod:`agents.core.guard`). Metrics are logged as sums over the
iteration's episodes (score, KL, tokens, episodes, each reward component), which the driver
turns into exact means over all runners. Prompts and tokens are drawn from seeds derived from
``(config.seed, worker index, training iteration, call)``, so a run resumed from a checkpoint
samples exactly what the uninterrupted run would have. In a multi-turn task each step also
records how many tokens the environment appended after the action (``ENV_TOKENS``), which
:mod:`agents.core.episode_rows` turns into the rows' loss mask.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from ray.rllib.core import COMPONENT_RL_MODULE
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.env.single_agent_episode import SingleAgentEpisode

import rlhf_env  # noqa: F401  (registers the tasks in this worker process)
from agents.core import metric_names as M
from agents.core.assets import receive_assets_from_driver
from agents.core.columns import ACTION_LOGP, ENV_TOKENS, REF_LOGP
from agents.core.lora import AdaptersOff, is_lora, merged_copy, merged_state_dict
from rlhf_env.policy.rollout import group_reset_options
from rlhf_env.policy.sampler import LMSampler


class LLMEnvRunner(SingleAgentEnvRunner):
    """Samples complete LLM episodes from ``num_envs_per_env_runner`` batched environments."""

    def make_env(self) -> None:
        if self.env is not None:
            self.env.close()
        self._close_engine()
        receive_assets_from_driver()  # this node may lack the task's prompts or model
        env_config = dict(self.config.env_config)
        if self._device.type != "cpu":  # the reference beside the policy on this runner's GPU
            env_config.setdefault("device", str(self._device))
        self.env = gym.make_vec(
            self.config.env,
            num_envs=self.config.num_envs_per_env_runner,
            vectorization_mode="vector_entry_point",
            **env_config,
        )
        self.num_envs = self.env.num_envs
        if getattr(self, "module", None) is not None:
            self._share_base_as_reference()
        self._kl_coef = self.env.unwrapped.kl_coef
        self._iteration = 0
        self._calls = 0
        self._samples: list[tuple[str, str, float]] = []
        self._engine = None  # the vLLM engine, built at the first sample() with engine: vllm
        self._engine_stale = False

    def make_module(self) -> None:
        super().make_module()
        self._share_base_as_reference()

    def _share_base_as_reference(self) -> None:
        """With LoRA the environment loads no reference of its own (``reference=False``): its
        reference is the policy's base with the adapters off, one copy of the base weights."""
        if self.env is None:  # the driver's local runner when remote ones sample: no env
            return
        if is_lora(self.module.policy) and self.config.share_base_as_reference:
            self.env.unwrapped.batch.set_reference(AdaptersOff(self.module.policy))

    def stop(self) -> None:
        self._close_engine()
        super().stop()

    def _close_engine(self) -> None:
        if getattr(self, "_engine", None) is not None:
            self._engine.close()
            self._engine = None

    def set_state(self, state) -> None:
        super().set_state(state)
        if COMPONENT_RL_MODULE in state:
            self._engine_stale = True

    def load_restored_weights(self, state) -> None:
        """Take the weights of a learner restored from a checkpoint. RLlib's ``set_state``
        ignores weights whose sequence number is not newer than the runner's, so after a
        rollback to an older checkpoint it would keep sampling the drifted weights (and the
        next updates' too, until the restored learner's count caught up): forget the runner's
        number first, then take the learner's weights and number."""
        self._weights_seq_no = 0
        self.set_state(state)

    @property
    def engine_kind(self) -> str:
        """``hf`` (KV-cached ``transformers`` sampler) or ``vllm``, from the module's config."""
        return self.module.model_config.get("engine", "hf")

    def _sampler(self, seed: int | None):
        """A fresh sampler over the current weights, for one round of episodes."""
        if self.engine_kind == "hf":
            return LMSampler(self.module.policy, self.num_envs, seed=seed)
        from rlhf_env.policy.vllm_engine import VLLMEngine, VLLMSampler

        batch, policy = self.env.unwrapped.batch, self.module.policy
        if self._engine is None:  # built from the merged weights (with LoRA: a passing copy)
            self._engine = VLLMEngine(
                merged_copy(policy),
                batch.tokenizer,
                max_num_seqs=self.num_envs,
                max_model_len=batch.max_prompt_tokens + batch.max_new_tokens,
                dtype=str(next(policy.parameters()).dtype).removeprefix("torch."),
                seed=self.config.seed or 0,
            )
        elif self._engine_stale:  # in memory, verified against the policy's log-probs
            self._engine.sync(policy, state_dict=merged_state_dict(policy))
        self._engine_stale = False
        return VLLMSampler(
            self._engine,
            self.num_envs,
            stop_ids=batch.stop_ids,
            max_new_tokens=batch.max_new_tokens,
            seed=seed,
        )

    def set_round(self, kl_coef: float, iteration: int, in_reward: bool = True) -> None:
        """Called by the driver before each iteration: β from its KL controller (the
        environment's reward penalty when ``in_reward``, else 0 there and only recorded with
        each episode for a KL term in the loss), and the iteration number the sampling seeds
        derive from (rewards also see it, as ``trainer_state.global_step``)."""
        self.env.unwrapped.kl_coef = kl_coef if in_reward else 0.0
        self.env.unwrapped.global_step = iteration
        self._kl_coef = kl_coef
        self._iteration, self._calls = iteration, 0

    def _round_seed(self) -> int | None:
        if self.config.seed is None:
            return None
        self._calls += 1
        return (
            self.config.seed
            + 1_000_003 * self._iteration
            + 7_919 * (self.worker_index or 0)
            + 104_729 * self._calls
        )

    def _sample(
        self,
        *,
        num_timesteps=None,
        num_episodes=None,
        explore=True,
        random_actions=False,
        force_reset=False,
    ) -> list[SingleAgentEpisode]:
        """One complete episode per environment (rows that end early idle until all end)."""
        seed = self._round_seed()
        sampler = self._sampler(seed)
        observations, _ = self.env.reset(seed=seed, options=self._group_prompts(seed))
        episodes = [self._start_episode(observations, row) for row in range(self.num_envs)]
        while not all(episode.is_done for episode in episodes):
            actions = sampler.act(observations)
            observations, rewards, terminated, truncated, infos = self.env.step(actions)
            for row, action in enumerate(actions):
                episode = episodes[row]
                if episode.is_done:  # finished earlier; its row has restarted, ignore it
                    continue
                episode.add_env_step(
                    observation=_row(observations, row),
                    action=int(action),
                    reward=float(rewards[row]),
                    terminated=bool(terminated[row]),
                    truncated=bool(truncated[row]),
                    extra_model_outputs={
                        ACTION_LOGP: np.float32(action.logprob),
                        REF_LOGP: np.float32(infos["ref_logprob"][row]),
                        ENV_TOKENS: np.int64(infos["env_tokens"][row]),
                    },
                )
                if episode.is_done:
                    episode.custom_data.update(
                        score=float(infos["score"][row]),
                        group=(seed, row // self.group_size),
                        kl_coef=self._kl_coef,
                        kl=float(infos["episode_kl"][row]),
                        # the agent's own text, what the guard measures (eqs. 39-40)
                        completion=str(infos["agent_completion"][row]),
                        contributions=self._contributions(infos, row),
                    )
                    self._log_llm_episode(infos, row)
        done = [episode.to_numpy() for episode in episodes]
        self._done_episodes_for_metrics.extend(done)
        self._increase_sampled_metrics(sum(len(e) for e in done), len(done))
        return done

    @property
    def group_size(self) -> int:
        """Environments per prompt group (1 for PPO; k >= 2 for online DPO)."""
        return getattr(self.config, "group_size", 1)

    def _group_prompts(self, seed: int | None) -> dict | None:
        """Reset options giving each group of ``group_size`` environments one shared prompt."""
        if self.group_size == 1:
            return None
        return group_reset_options(
            len(self.env.unwrapped.prompts), self.num_envs, self.group_size, seed
        )

    def _start_episode(self, observations, row: int) -> SingleAgentEpisode:
        episode = SingleAgentEpisode(
            observation_space=self.env.single_observation_space,
            action_space=self.env.single_action_space,
        )
        episode.add_env_reset(observation=_row(observations, row))
        return episode

    def _log_llm_episode(self, infos: dict, row: int) -> None:
        """Sums over the iteration's episodes (see the module docstring)."""
        self.metrics.log_value(M.SCORE_SUM, float(infos["score"][row]), reduce="sum")
        self.metrics.log_value(M.KL_SUM, float(infos["episode_kl"][row]), reduce="sum")
        self.metrics.log_value(M.TOKENS, int(infos["response_length"][row]), reduce="sum")
        self.metrics.log_value(M.EPISODES, 1, reduce="sum")
        for name, values in infos["reward_components"].items():
            if not name.startswith("_"):
                self.metrics.log_value(
                    M.COMPONENT_SUM_PREFIX + name, float(values[row]), reduce="sum"
                )
        self._samples.append(
            (str(infos["prompt"][row]), str(infos["completion"][row]), float(infos["score"][row]))
        )

    def _contributions(self, infos: dict, row: int) -> dict[str, float]:
        """Each reward component's weighted share of the episode's score (for the guard)."""
        components = self.env.unwrapped.batch.reward.components
        values = infos["reward_components"]
        return {c.name: c.weight * float(values[c.name][row]) for c in components}

    def pop_samples(self, limit: int = 8) -> list[tuple[str, str, float]]:
        """Recent (prompt, completion, score) triples, for the tracker's table of generations."""
        samples, self._samples = self._samples[-limit:], []
        return samples


def _row(observations: dict[str, np.ndarray], row: int) -> dict[str, np.ndarray]:
    return {key: value[row] for key, value in observations.items()}

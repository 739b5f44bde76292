"""The training step of every online algorithm: sample exactly the iteration's episodes, shard
them whole over the learners, update, sync the new weights to the env runners.

RLlib's own steps count environment steps (so episodes that end early at EOS give more
episodes than asked for) and shard a batch by timesteps, cutting episodes in two. Here an
iteration samples ``episodes_per_iteration`` complete episodes in rounds (each env runner returns
one episode per environment per round), groups them into training units (an episode; for group
algorithms the k responses to one prompt), and gives each learner an equal number of whole
units through one object-store reference per learner. The learners average their gradients
(RLlib's learner group: torch DDP, gloo on CPU, NCCL on GPU), so every learner ends the update
with the same weights.
"""

from __future__ import annotations

import ray
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    TIMERS,
)

from agents.core.guard import batch_signals

# Rounds a sample may take beyond the planned ones, to make up for env runners that failed
# (RLlib restarts them; their episodes of that round are lost).
SPARE_ROUNDS = 3


class OnlineTrainingStep:
    """Mixin for an RLlib ``Algorithm`` whose config has ``episodes_per_iteration`` and
    ``group_size`` (see the module docstring)."""

    def training_step(self) -> None:
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            units, runner_metrics = self.sample_units()
        self.metrics.aggregate(runner_metrics, key=ENV_RUNNER_RESULTS)
        if not units:  # nothing to learn from this iteration (e.g. every group tied)
            return
        signals = batch_signals([episode for unit in units for episode in unit])
        for name, value in signals.items():
            self.metrics.log_value(name, value, reduce="mean")
        threshold = self.config.kl_spike_threshold
        if threshold is not None and signals["guard/kl"] > threshold:
            self.metrics.log_value("guard/kl_spike", 1.0, reduce="mean")
            return  # the driver's guard raises β (and, after a few in a row, rolls back)
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            results = update_learners(self.learner_group, units)
        self.metrics.aggregate(results, key=LEARNER_RESULTS)
        self.env_runner_group.sync_weights(
            from_worker_or_learner_group=self.learner_group,
            policies=[DEFAULT_MODULE_ID],
            inference_only=True,
        )

    def sample_units(self, num_episodes: int | None = None) -> tuple[list[list], list[dict]]:
        """The iteration's training units (``num_episodes`` episodes' worth, by default the
        config's) and the env runners' metrics; an algorithm may filter or resample them."""
        episodes, metrics = sample_episodes(
            self.env_runner_group,
            num_episodes or self.config.episodes_per_iteration,
            per_call=self.config.num_envs_per_env_runner,
            timeout_s=self.config.sample_timeout_s,
        )
        return training_units(episodes, self.config.group_size), metrics


def sample_episodes(
    env_runner_group, num_episodes: int, *, per_call: int, timeout_s: float | None = None
):
    """Exactly ``num_episodes`` complete episodes from the env runners, with their metrics.

    Each call of a runner's ``sample()`` returns ``per_call`` episodes, one per environment; a
    round asks as many healthy runners as the episodes still missing need (the local runner
    when there are no remote ones). A runner that fails loses its round's episodes, and RLlib
    restarts it.
    """
    episodes, metrics = [], []
    for _ in range(num_episodes + SPARE_ROUNDS):
        if len(episodes) >= num_episodes:
            return episodes[:num_episodes], metrics
        if env_runner_group.num_remote_env_runners() == 0:
            results = [
                (
                    env_runner_group.local_env_runner.sample(),
                    env_runner_group.local_env_runner.get_metrics(),
                )
            ]
        else:
            calls = -(-(num_episodes - len(episodes)) // per_call)
            results = env_runner_group.foreach_env_runner(
                lambda runner: (runner.sample(), runner.get_metrics()),
                local_env_runner=False,
                remote_worker_ids=env_runner_group.healthy_env_runner_ids()[:calls],
                timeout_seconds=timeout_s,
            )
        for sampled, stats in results:
            episodes += sampled
            metrics.append(stats)
    raise RuntimeError(f"the env runners returned {len(episodes)} of {num_episodes} episodes")


def training_units(episodes: list, group_size: int) -> list[list]:
    """The episodes as training units: one per episode, or each prompt's group of responses."""
    return [[episode] for episode in episodes] if group_size == 1 else episode_groups(episodes)


def episode_groups(episodes: list) -> list[list]:
    """The episodes grouped by prompt (a group shares ``custom_data["group"]``), in order."""
    groups: dict = {}
    for episode in episodes:
        groups.setdefault(episode.custom_data["group"], []).append(episode)
    return list(groups.values())


def update_learners(learner_group, units: list[list]) -> list[dict]:
    """One learner update on the units: all of them on a local learner, or an equal share of
    whole units on each remote learner."""
    if learner_group.is_local:
        return learner_group.update(episodes=[e for unit in units for e in unit])
    shards = len(learner_group)
    if len(units) % shards:
        raise ValueError(f"{len(units)} training units do not split evenly over {shards} learners")
    size = len(units) // shards
    refs = [
        ray.put([e for unit in units[i * size : (i + 1) * size] for e in unit])
        for i in range(shards)
    ]
    return learner_group.update(episodes_refs=refs)


def update_on_rows(learner_group, shards: list[dict]) -> list[dict]:
    """One learner update on ready-made training rows: one dict of [rows, ...] tensors per
    learner (a single one on a local learner)."""
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

    batches = [
        MultiAgentBatch(
            {DEFAULT_MODULE_ID: SampleBatch({key: value.numpy() for key, value in rows.items()})},
            env_steps=len(rows[next(iter(rows))]),
        )
        for rows in shards
    ]
    if learner_group.is_local:
        return learner_group.update(batch=batches[0])
    return learner_group.update(batch_refs=[ray.put(batch) for batch in batches])

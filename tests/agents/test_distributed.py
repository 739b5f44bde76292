"""Data-parallel learners: one update on two learners equals one update on one learner, and
every learner ends it with the same weights (PPO, online DPO, GRPO)."""

import pytest
import torch

from agents.core.training_step import training_units, update_learners

CASES = {
    # 16 episodes in one minibatch, one epoch: one optimiser step on the global batch
    "ppo": (
        "configs/ppo_tiny.yaml",
        (
            "ppo.episodes_per_iteration=16",
            "ppo.minibatch_episodes=16",
            "ppo.epochs=1",
            "scale.num_envs_per_env_runner=16",
        ),
        1,
    ),
    # 4 prompt groups of 4 responses, their 4 best/worst pairs in one minibatch
    # 4 prompt groups of 4 responses in one minibatch, the per-token (DAPO) normaliser
    "grpo": (
        "configs/grpo_tiny.yaml",
        ("grpo.prompts_per_iteration=4", "grpo.minibatch_groups=4"),
        4,
    ),
    "dpo_online": (
        "configs/dpo_online_tiny.yaml",
        ("dpo.prompts_per_iteration=4", "dpo.minibatch_pairs=4"),
        4,
    ),
}


@pytest.mark.parametrize("algorithm", sorted(CASES))
def test_one_update_on_two_learners_equals_one_on_one(algorithm, tiny_config, build_algo):
    def module_weights(learner) -> dict[str, torch.Tensor]:  # local: pickled by value to actors
        module = learner.module["default_policy"].unwrapped()
        return {k: v.detach().clone() for k, v in module.state_dict().items()}

    preset, overrides, group_size = CASES[algorithm]
    one = build_algo(tiny_config(*overrides, "run.name=one", preset=preset))
    two = build_algo(tiny_config(*overrides, "run.name=two", "scale.num_learners=2", preset=preset))
    runner = one.env_runner_group.local_env_runner
    runner.set_round(kl_coef=0.05, iteration=0)
    units = training_units(runner.sample(), group_size)
    if algorithm != "ppo":  # make sure the step has groups to learn from
        assert any(len({e.custom_data["score"] for e in unit}) > 1 for unit in units)

    before = module_weights(one.learner_group._learner)
    for weights in (r.get() for r in two.learner_group.foreach_learner(module_weights)):
        for key, value in weights.items():
            torch.testing.assert_close(value, before[key])  # the same start, from the seed
    update_learners(one.learner_group, units)
    update_learners(two.learner_group, units)

    after_one = module_weights(one.learner_group._learner)
    after_two = [r.get() for r in two.learner_group.foreach_learner(module_weights)]
    assert len(after_two) == 2
    moved = max((after_one[k] - before[k]).abs().max().item() for k in before)
    assert moved > 1e-4  # the update did something
    for weights in after_two:
        for key, value in weights.items():
            # Adam's first step divides each gradient by its size: where a gradient is ~0,
            # float noise moves that parameter by a small fraction of one step (lr 3e-3)
            torch.testing.assert_close(value, after_one[key], rtol=1e-4, atol=2e-5)

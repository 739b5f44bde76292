"""Rewards see the training iteration as ``trainer_state.global_step``, as TRL's rewards do, in
training rollouts and held-out evaluations alike."""

from agents.driver.loop import train

STEPS: list[int] = []


def step_reward(prompts, completions, trainer_state, **kwargs):
    """Records the step it is called at; scores by length so the run has something to learn."""
    STEPS.append(trainer_state.global_step)
    return [float(len(c)) for c in completions]


def test_rewards_see_the_training_iteration(tiny_config):
    STEPS.clear()
    config = tiny_config(
        "run.iterations=2",
        "run.checkpoint_every=2",
        "run.eval_episodes=8",
        "run.eval_every=0",
        "ppo.episodes_per_iteration=8",
        "ppo.minibatch_episodes=8",
        "ppo.epochs=1",
        f"task.overrides.reward={__name__}:step_reward",
    )
    train(config, progress=False)
    # Sampling for iterations 1 and 2 sees global steps 0 and 1; the held-out evaluations before
    # and after training see 0 and 2 (the iterations done).
    assert sorted(set(STEPS)) == [0, 1, 2]

"""Devices, bf16 and LoRA on the tiny task: placement, log-prob tolerance, learning in bf16,
adapters that alone train, travel and resume, the base as reference, merged export."""

import json

import gymnasium as gym
import pytest
import torch
from transformers import AutoModelForCausalLM

from agents.core.training_step import training_units, update_learners
from agents.driver.checkpoints import latest_checkpoint
from agents.driver.loop import train
from rlhf_env.data.ops import token_logprobs
from rlhf_env.data.tiny import tiny_model

LORA = ("lora.r=4", "lora.alpha=8")


def test_the_reference_runs_on_the_device_asked_for():
    env = gym.make("rlhf_env/Tiny-v0", device="cpu")
    assert env.unwrapped.batch.reference.device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            gym.make("rlhf_env/Tiny-v0", device="cuda")


def test_bf16_logprobs_are_within_tolerance_of_float32():
    """The stated tolerance on the tiny model: mean |Δ log π| < 0.005, max < 0.02."""
    torch.manual_seed(0)
    model, ids = tiny_model(), torch.randint(3, 60, (8, 24))
    with torch.no_grad():
        fp32 = token_logprobs(model(input_ids=ids).logits[:, :-1], ids[:, 1:])
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the learner's bf16
            autocast = token_logprobs(model(input_ids=ids).logits[:, :-1], ids[:, 1:])
        weights = tiny_model().to(torch.bfloat16)  # the sampler's bf16
        bf16 = token_logprobs(weights(input_ids=ids).logits[:, :-1], ids[:, 1:])
    for other in (autocast, bf16):
        assert other.dtype == torch.float32
        assert (other - fp32).abs().mean() < 0.005 and (other - fp32).abs().max() < 0.02


def test_tiny_ppo_still_learns_in_bf16(tiny_config):
    config = tiny_config("precision=bf16", "run.iterations=12", "run.checkpoint_every=0")
    records = train(config, progress=False)
    evals = [json.loads(line) for line in (config.run_dir / "eval.jsonl").read_text().splitlines()]
    assert evals[-1]["eval/score"] > evals[0]["eval/score"] + 0.3, evals
    assert all(r["rollout/logprob_abs_diff"] < 0.05 for r in records)  # bf16 sampler vs learner


def test_lora_adapters_alone_train_travel_and_the_base_is_the_reference(tiny_config, build_algo):
    algo = build_algo(tiny_config(*LORA, "ppo.lr=1e-2"))
    learner = algo.learner_group._learner.module["default_policy"]
    runner = algo.env_runner_group.local_env_runner
    names = {n for n, p in learner.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n or n.startswith("value_head") for n in names)
    before = {n: p.detach().clone() for n, p in learner.named_parameters()}
    runner.set_round(kl_coef=0.05, iteration=0)
    update_learners(algo.learner_group, training_units(runner.sample(), 1))
    algo.env_runner_group.sync_weights(
        from_worker_or_learner_group=algo.learner_group,
        policies=["default_policy"],
        inference_only=True,
    )
    after = dict(learner.named_parameters())
    changed = {n for n in after if not torch.equal(after[n], before[n])}
    assert changed and changed <= names  # the base did not move
    # only the adapters travel, and they arrived
    state = learner.get_state(inference_only=True)
    assert state and all("lora_" in key for key in state)
    sampler = dict(runner.module.named_parameters())
    for name in changed - {n for n in changed if n.startswith("value_head")}:
        torch.testing.assert_close(sampler[name], after[name])
    # an adapter that never arrives is an error, not a policy that silently trains nothing
    with pytest.raises(ValueError, match="left 1 adapters out"):
        runner.module.set_state({k: v for k, v in list(state.items())[1:]})
    # the environment's reference is the sampler's own base with the adapters off
    reference = runner.env.unwrapped.batch.reference.model
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(
            reference(input_ids=ids).logits, tiny_model()(input_ids=ids).logits
        )
        assert not torch.allclose(
            runner.module.policy(input_ids=ids).logits, tiny_model()(input_ids=ids).logits
        )


def test_lora_trains_with_a_remote_env_runner(tiny_config):
    """The driver's local env runner has no environment when remote runners sample: building
    its LoRA module must not try to share the base with an environment it does not have."""
    config = tiny_config(*LORA, "scale.num_env_runners=1", "run.iterations=2")
    records = train(config, progress=False)
    assert [r["iteration"] for r in records] == [1, 2]
    assert all("losses/actor_loss" in r for r in records)


def test_lora_resume_is_exact_and_the_merged_export_loads_in_plain_transformers(tiny_config):
    straight = train(
        tiny_config(*LORA, "run.name=straight", "run.iterations=4", "run.checkpoint_every=100"),
        progress=False,
    )
    train(
        tiny_config(*LORA, "run.name=resumed", "run.iterations=2", "run.checkpoint_every=2"),
        progress=False,
    )
    resumed_config = tiny_config(
        *LORA, "run.name=resumed", "run.iterations=4", "run.checkpoint_every=100"
    )
    resumed = train(resumed_config, progress=False)
    for a, b in zip(straight[2:], resumed):
        assert a["losses/actor_loss"] == pytest.approx(b["losses/actor_loss"], rel=1e-4, abs=1e-6)
    last = latest_checkpoint(resumed_config.run_dir)
    assert (last / "policy_adapter" / "adapter_model.safetensors").is_file()
    merged = AutoModelForCausalLM.from_pretrained(last / "policy")  # plain transformers
    from peft import PeftModel

    adapted = PeftModel.from_pretrained(tiny_model(), last / "policy_adapter")
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(
            merged(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-5, rtol=1e-5
        )


def test_gradient_checkpointing_gives_the_same_update(tiny_config):
    plain = train(
        tiny_config(
            "run.name=plain", "run.iterations=1", "run.checkpoint_every=0", "run.eval_episodes=0"
        ),
        progress=False,
    )
    checkpointed = train(
        tiny_config(
            "run.name=gc",
            "run.iterations=1",
            "run.checkpoint_every=0",
            "run.eval_episodes=0",
            "gradient_checkpointing=true",
        ),
        progress=False,
    )
    for key in ("losses/actor_loss", "losses/critic_loss"):
        assert checkpointed[0][key] == pytest.approx(plain[0][key], rel=1e-5, abs=1e-7)

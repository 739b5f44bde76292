"""The batched KV-cached model gives the same next-token distribution as a full forward."""

import torch

from rlhf_env.data import kv_cache
from rlhf_env.data.kv_cache import BatchedKVModel
from rlhf_env.data.tiny import tiny_model


def _full_forward_logprobs(model, ids):
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], -1)


def test_matches_full_forward_through_restarts_and_inactive_rows():
    model = tiny_model()
    kv = BatchedKVModel(model, batch_size=3)
    streams = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14]]
    kv.reset_rows([0, 1, 2], streams)
    rng = torch.Generator().manual_seed(1)
    for step in range(40):
        tokens = torch.randint(3, 60, (3,), generator=rng)
        active = torch.rand(3, generator=rng) > 0.2
        kv.append(tokens, active)
        for row in range(3):
            if active[row]:
                streams[row].append(int(tokens[row]))
        if step % 7 == 3:  # restart one row with a prompt of a new length
            row = step % 3
            streams[row] = torch.randint(3, 60, (1 + step % 6,), generator=rng).tolist()
            kv.reset_rows([row], [streams[row]])
        expected = torch.stack([_full_forward_logprobs(model, s) for s in streams])
        assert torch.allclose(torch.log_softmax(kv.next_logits, -1), expected, atol=1e-5)
        # Unused leading columns are trimmed: the cache never outgrows the live streams much.
        assert kv.num_columns <= max(len(s) for s in streams) + 8


def test_log_probs_picks_the_token():
    model = tiny_model()
    kv = BatchedKVModel(model, batch_size=2)
    kv.reset_rows([0, 1], [[5, 6], [7]])
    tokens = torch.tensor([9, 11])
    expected = torch.log_softmax(kv.next_logits, -1)[[0, 1], tokens]
    assert torch.allclose(kv.log_probs(tokens), expected)


def test_extend_by_runs_of_tokens_matches_full_forward_without_re_encoding():
    """Multi-turn: rows extended by runs of different lengths (0 to 4 tokens, an environment's
    inserted reply) feed only the new tokens, never the cached prefix, and the rows with one
    token do not pay for the longest run."""
    model = tiny_model()
    shapes = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs.get("input_ids", *args).shape)),
        with_kwargs=True,
    )
    kv = BatchedKVModel(model, batch_size=3)
    streams = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    kv.reset_rows([0, 1, 2], streams)
    rng = torch.Generator().manual_seed(2)
    for step in range(12):
        runs = [torch.randint(3, 60, (int(n),), generator=rng).tolist() for n in (step % 5, 1, 3)]
        shapes.clear()
        kv.extend(runs)
        # Only new tokens are fed: one per row, then the rows with longer runs on their own.
        wide = [len(run) for run in runs if len(run) > 1]
        assert shapes == [(3, 1), (len(wide), max(wide))]
        for row, run in enumerate(runs):
            streams[row] += run
        if step % 3 == 0:  # interleave single-token steps, as an episode does
            kv.append(torch.tensor([20, 21, 22]), torch.tensor([True, False, True]))
            streams[0].append(20)
            streams[2].append(22)
        expected = torch.stack([_full_forward_logprobs(model, s) for s in streams])
        assert torch.allclose(torch.log_softmax(kv.next_logits, -1), expected, atol=1e-5)


def test_packing_the_masked_columns_of_inserted_runs_keeps_the_logits(monkeypatch):
    """Multi-turn rows restarted at different times, each extended by runs that widen every
    row: without packing the cache grows to several times the longest stream; packed (here
    with no slack, so it packs often) it stays within 1.5 times it, with the same logits."""
    monkeypatch.setattr(kv_cache, "COMPACT_SLACK", 0)
    model = tiny_model()
    kv = BatchedKVModel(model, batch_size=3)
    streams = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    kv.reset_rows([0, 1, 2], streams)
    rng = torch.Generator().manual_seed(3)
    for step in range(30):
        row = step % 3  # one row gets an inserted reply of 5 tokens, the others nothing
        runs = [
            torch.randint(3, 60, (5,), generator=rng).tolist() if r == row else [] for r in range(3)
        ]
        kv.extend(runs)
        streams[row] += runs[row]
        kv.append(torch.tensor([20, 21, 22]))
        for r, token in enumerate((20, 21, 22)):
            streams[r].append(token)
        if step % 4 == 3:  # a row's episode ends and it restarts with a new prompt
            restart = (step // 4) % 3
            streams[restart] = torch.randint(3, 60, (2 + step % 3,), generator=rng).tolist()
            kv.reset_rows([restart], [streams[restart]])
        expected = torch.stack([_full_forward_logprobs(model, s) for s in streams])
        assert torch.allclose(torch.log_softmax(kv.next_logits, -1), expected, atol=1e-5)
        longest = max(len(s) for s in streams)
        assert kv.num_columns <= longest + longest // 2

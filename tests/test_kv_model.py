"""The batched KV-cached model gives the same next-token distribution as a full forward."""

import torch

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
    inserted reply) in one forward that feeds only the new tokens, never the cached prefix."""
    model = tiny_model()
    widths = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs.get("input_ids", *args).shape[1]),
        with_kwargs=True,
    )
    kv = BatchedKVModel(model, batch_size=3)
    streams = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    kv.reset_rows([0, 1, 2], streams)
    rng = torch.Generator().manual_seed(2)
    for step in range(12):
        runs = [torch.randint(3, 60, (int(n),), generator=rng).tolist() for n in (step % 5, 1, 3)]
        widths.clear()
        kv.extend(runs)
        assert widths == [4 if step % 5 == 4 else 3]  # only the new columns are fed
        for row, run in enumerate(runs):
            streams[row] += run
        if step % 3 == 0:  # interleave single-token steps, as an episode does
            kv.append(torch.tensor([20, 21, 22]), torch.tensor([True, False, True]))
            streams[0].append(20)
            streams[2].append(22)
        expected = torch.stack([_full_forward_logprobs(model, s) for s in streams])
        assert torch.allclose(torch.log_softmax(kv.next_logits, -1), expected, atol=1e-5)

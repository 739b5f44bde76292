"""Preference rows: exact layout, and one padded forward equal to separate unpadded forwards."""

import math

import numpy as np
import pytest
import torch

from agents.core.columns import padded_rows
from agents.dpo.loss import dpo_loss
from agents.dpo.rows import preference_rows
from rlhf_env.data.ops import pad_rows, pad_sequences, response_logprobs, summed_logprobs
from rlhf_env.data.tiny import tiny_model

PROMPTS = [[5, 6], [7]]
CHOSEN = [[8], [9, 10, 11]]
REJECTED = [[12, 13], [14]]


def refs(responses, start=-1.0):
    """Made-up per-token reference log-probs, one per response token."""
    return [[start - 0.1 * i for i in range(len(r))] for r in responses]


def test_preference_rows_layout():
    rows = preference_rows(
        PROMPTS,
        CHOSEN,
        REJECTED,
        pad_id=1,
        ref_chosen=refs(CHOSEN),
        ref_rejected=refs(REJECTED, -2.0),
        weights=[1.0, 0.0],
        kl_coef=[0.3, 0.3],
    )
    # P = 2 (longest prompt), T = 3 (longest response); chosen rows 0-1, rejected rows 2-3.
    expected = {
        "input_ids": [
            [5, 6, 8, 1, 1],  # pair 0, chosen
            [1, 7, 9, 10, 11],  # pair 1, chosen
            [5, 6, 12, 13, 1],  # pair 0, rejected
            [1, 7, 14, 1, 1],  # pair 1, rejected
        ],
        "attention_mask": [[1, 1, 1, 0, 0], [0, 1, 1, 1, 1], [1, 1, 1, 1, 0], [0, 1, 1, 0, 0]],
        "prompt_width": [2, 2, 2, 2],
        "actions": [[8, 1, 1], [9, 10, 11], [12, 13, 1], [14, 1, 1]],
        "loss_mask": [[1, 0, 0], [1, 1, 1], [1, 1, 0], [1, 0, 0]],
    }
    for key, value in expected.items():
        dtype = torch.bool if key == "loss_mask" else torch.long
        assert rows[key].dtype == dtype, key
        assert torch.equal(rows[key], torch.tensor(value, dtype=dtype)), key
    # per-token reference log-probs aligned with "actions" (0 on padding); each row carries its
    # pair's weight and β
    torch.testing.assert_close(
        rows["ref_logp"],
        torch.tensor([[-1.0, 0, 0], [-1.0, -1.1, -1.2], [-2.0, -2.1, 0], [-2.0, 0, 0]]),
    )
    assert rows["pair_weight"].tolist() == [1.0, 0.0, 1.0, 0.0]
    torch.testing.assert_close(rows["kl_coef"], torch.full((4,), 0.3))


@pytest.mark.parametrize(
    "prompts, chosen, rejected, message",
    [
        ([[5], []], [[8], [9]], [[12], [14]], "pair 1 has an empty prompt"),
        ([[5], [6]], [[], [9]], [[12], [14]], "pair 0 has an empty chosen response"),
        ([[5], [6]], [[8], [9]], [[12], []], "pair 1 has an empty rejected response"),
        ([[5], [6]], [[8]], [[12], [14]], "2 prompts, 1 chosen and 2 rejected"),
        ([], [], [], "no preference pairs"),
    ],
)
def test_preference_rows_bad_input(prompts, chosen, rejected, message):
    with pytest.raises(ValueError, match=message):
        preference_rows(
            prompts, chosen, rejected, ref_chosen=refs(chosen), ref_rejected=refs(rejected)
        )


def test_shared_padding_takes_arrays_and_pads_either_side():
    seqs = [np.array([1, 2, 3]), np.array([4])]
    assert torch.equal(pad_sequences(seqs), torch.tensor([[1, 2, 3], [4, 0, 0]]))
    left = pad_sequences(seqs, side="left", pad=9)
    assert torch.equal(left, torch.tensor([[1, 2, 3], [9, 9, 4]]))
    floats = pad_sequences([np.array([0.5], dtype=np.float64)], width=2, dtype=torch.float32)
    assert floats.dtype == torch.float32 and floats.tolist() == [[0.5, 0.0]]
    rows = pad_rows([np.array([3, 4])], [np.array([5])])
    assert rows.input_ids.tolist() == [[3, 4, 5]] and rows.prompt_width == 2
    with pytest.raises(ValueError, match="row 0 has an empty response"):
        pad_rows([[3]], [[]])


def forward_logprobs(model, rows):
    """One forward over padded rows -> per-row summed response log-probs [2N]."""
    padded = padded_rows(rows)
    return summed_logprobs(response_logprobs(model, padded), padded.loss_mask)


def random_pairs(vocab, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def tokens(n):
        return torch.randint(3, vocab, (n,), generator=gen).tolist()  # ids 0-2 are special

    prompts = [tokens(n) for n in (3, 1, 5)]
    chosen = [tokens(n) for n in (2, 4, 1)]
    rejected = [tokens(n) for n in (3, 1, 2)]
    return prompts, chosen, rejected


@torch.no_grad()
def test_padded_forward_matches_separate_forwards():
    model = tiny_model(seed=0)
    prompts, chosen, rejected = random_pairs(model.config.vocab_size)
    rows = preference_rows(
        prompts,
        chosen,
        rejected,
        pad_id=model.config.pad_token_id,
        ref_chosen=refs(chosen),
        ref_rejected=refs(rejected),
    )
    logps_chosen, logps_rejected = forward_logprobs(model, rows).chunk(2)

    def separate(prompt, response):
        logits = model(input_ids=torch.tensor([prompt + response])).logits[0]
        logp = logits[len(prompt) - 1 : -1].log_softmax(-1)
        return logp.gather(-1, torch.tensor(response)[:, None]).sum()

    torch.testing.assert_close(
        logps_chosen,
        torch.stack([separate(p, r) for p, r in zip(prompts, chosen)]),
        atol=1e-5,
        rtol=0,
    )
    torch.testing.assert_close(
        logps_rejected,
        torch.stack([separate(p, r) for p, r in zip(prompts, rejected)]),
        atol=1e-5,
        rtol=0,
    )


def test_dpo_steps_on_tiny_model_separate_the_pairs():
    """At π_θ = π_ref the loss is log 2; a few SGD steps make every pair ranked right."""
    torch.manual_seed(0)
    policy, reference = tiny_model(seed=0), tiny_model(seed=0)
    prompts, chosen, rejected = random_pairs(policy.config.vocab_size, seed=1)
    rows = preference_rows(
        prompts, chosen, rejected, ref_chosen=refs(chosen), ref_rejected=refs(rejected)
    )
    with torch.no_grad():
        ref_chosen, ref_rejected = forward_logprobs(reference, rows).chunk(2)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    losses = []
    for _ in range(3):  # the stats come from the forward before each step
        loss, stats = dpo_loss(
            *forward_logprobs(policy, rows).chunk(2), ref_chosen, ref_rejected, beta=0.5
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)
    assert losses[-1] < losses[0]
    assert stats["rewards/accuracy"].item() == 1.0

"""The shared tensor operations: per-token log-probs, entropy, sequence sums, padded rows."""

import pytest
import torch

from rlhf_env.data.ops import (
    entropy,
    pad_rows,
    position_ids,
    response_logprobs,
    summed_logprobs,
    token_logprobs,
)
from rlhf_env.data.tiny import tiny_model


def padded_example():
    """Row 0: three real tokens; row 1: two and a padded slot with garbage logits and id."""
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    logits[1, 2] = 1e4
    tokens = torch.tensor([[1, 4, 2], [3, 0, -100]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return logits, tokens, mask


def test_logprobs_and_entropy_match_categorical():
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(2, 5, 11, generator=gen)
    tokens = torch.randint(0, 11, (2, 5), generator=gen)
    dist = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(token_logprobs(logits, tokens), dist.log_prob(tokens))
    torch.testing.assert_close(entropy(logits), dist.entropy())


def test_sequence_sums_match_categorical_and_skip_padding():
    logits, tokens, mask = padded_example()
    per_token = token_logprobs(logits, tokens, mask)
    assert per_token.shape == (2, 3) and per_token[1, 2] == 0
    manual = torch.stack(
        [
            sum(
                torch.distributions.Categorical(logits=logits[i, t]).log_prob(tokens[i, t])
                for t in range(3)
                if mask[i, t]
            )
            for i in range(2)
        ]
    )
    torch.testing.assert_close(summed_logprobs(per_token, mask), manual)
    torch.testing.assert_close(
        summed_logprobs(per_token, mask, average=True), manual / torch.tensor([3.0, 2.0])
    )


def test_gradient_stays_on_real_tokens():
    logits, tokens, mask = padded_example()
    logits.requires_grad_(True)
    summed_logprobs(token_logprobs(logits, tokens, mask), mask).sum().backward()
    assert logits.grad[1, 2].abs().sum() == 0
    # d log softmax(z)[y] / dz = onehot(y) − softmax(z)
    expected = torch.nn.functional.one_hot(tokens[0, 0], 5) - logits[0, 0].detach().softmax(-1)
    torch.testing.assert_close(logits.grad[0, 0], expected.float())


def test_bf16_logits_come_back_float32():
    logits, tokens, mask = padded_example()
    assert token_logprobs(logits.bfloat16(), tokens, mask).dtype == torch.float32
    assert entropy(logits.bfloat16()).dtype == torch.float32


def test_errors():
    logits, tokens, mask = padded_example()
    with pytest.raises(ValueError, match="expected logits"):
        token_logprobs(logits, tokens[:, :2], mask)
    mask[1] = 0
    with pytest.raises(ValueError, match=r"rows \[1\] have no real response tokens"):
        summed_logprobs(token_logprobs(logits, tokens, mask), mask)


def test_position_ids_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]])
    assert position_ids(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 3]]


@torch.no_grad()
def test_response_logprobs_of_padded_rows_equal_separate_forwards():
    model = tiny_model(seed=3)
    prompts, responses = [[5, 6, 7], [8]], [[9, 10], [11, 12, 13]]
    rows = pad_rows(prompts, responses, pad_id=0)
    padded = response_logprobs(model, rows)
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        logits = model(input_ids=torch.tensor([prompt + response])).logits[0]
        separate = logits[len(prompt) - 1 : -1].log_softmax(-1)
        expected = separate.gather(-1, torch.tensor(response)[:, None])[:, 0]
        torch.testing.assert_close(padded[i, : len(response)], expected, atol=1e-5, rtol=0)
        assert not padded[i, len(response) :].any()

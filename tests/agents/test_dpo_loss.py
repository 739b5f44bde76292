"""DPO / IPO losses and statistics against hand computations (docs/formulation.md eqs. 22-27)."""

import math

import pytest
import torch

from agents.dpo.loss import AVERAGE_LOGPROBS, dpo_loss, kl_penalty


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


# Two pairs (log-probs of whole responses):
#              π_θ(y_w)  π_ref(y_w)  π_θ(y_l)  π_ref(y_l) | chosen  rejected   h = difference
#   pair 0:     −3.0      −4.0        −5.0      −4.0      |  +1.0    −1.0       +2.0
#   pair 1:     −5.5      −5.0        −2.5      −3.0      |  −0.5    +0.5       −1.0
POLICY_CHOSEN = [-3.0, -5.5]
REF_CHOSEN = [-4.0, -5.0]
POLICY_REJECTED = [-5.0, -2.5]
REF_REJECTED = [-4.0, -3.0]


def pairs(requires_grad=False):
    return dict(
        policy_chosen=torch.tensor(POLICY_CHOSEN, requires_grad=requires_grad),
        policy_rejected=torch.tensor(POLICY_REJECTED, requires_grad=requires_grad),
        ref_chosen=torch.tensor(REF_CHOSEN, requires_grad=requires_grad),
        ref_rejected=torch.tensor(REF_REJECTED, requires_grad=requires_grad),
    )


def test_sigmoid_loss_by_hand():
    loss, _ = dpo_loss(**pairs(), beta=0.5)
    # β·h = [1.0, −0.5]: L = ½(−log σ(1) − log σ(−0.5)) = ½(0.3132617 + 0.9740770) = 0.6436693
    expected = -(math.log(sigmoid(1.0)) + math.log(sigmoid(-0.5))) / 2
    assert expected == pytest.approx(0.6436693, abs=1e-6)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_label_smoothing_by_hand():
    loss, _ = dpo_loss(**pairs(), beta=0.5, label_smoothing=0.1)
    # cDPO: −0.9·log σ(β·h) − 0.1·log σ(−β·h) per pair
    #   pair 0: 0.9·0.3132617 + 0.1·1.3132617 = 0.4132617
    #   pair 1: 0.9·0.9740770 + 0.1·0.4740770 = 0.9240770       mean = 0.6686693
    pair0 = -0.9 * math.log(sigmoid(1.0)) - 0.1 * math.log(sigmoid(-1.0))
    pair1 = -0.9 * math.log(sigmoid(-0.5)) - 0.1 * math.log(sigmoid(0.5))
    assert (pair0 + pair1) / 2 == pytest.approx(0.6686693, abs=1e-6)
    assert loss.item() == pytest.approx((pair0 + pair1) / 2, abs=1e-6)


def test_ipo_by_hand():
    # Target 1/(2β): β = 0.5 → 1:  ((2 − 1)² + (−1 − 1)²)/2 = (1 + 4)/2 = 2.5
    loss, _ = dpo_loss(**pairs(), beta=0.5, loss_type="ipo")
    assert loss.item() == pytest.approx(2.5, abs=1e-6)
    # β = 0.25 → target 2:  ((2 − 2)² + (−1 − 2)²)/2 = 4.5
    loss, _ = dpo_loss(**pairs(), beta=0.25, loss_type="ipo")
    assert loss.item() == pytest.approx(4.5, abs=1e-6)
    assert AVERAGE_LOGPROBS == {"sigmoid": False, "ipo": True}


def test_stats_by_hand():
    loss, stats = dpo_loss(**pairs(), beta=0.5)
    # rewards = β·(log π_θ − log π_ref): chosen [0.5, −0.25], rejected [−0.5, 0.25]
    expected = {
        "loss": loss.item(),
        "rewards/chosen": 0.125,
        "rewards/rejected": -0.125,
        "rewards/accuracy": 0.5,  # pair 0 right (0.5 > −0.5), pair 1 wrong (−0.25 < 0.25)
        "rewards/margin": 0.25,  # mean of [1.0, −0.5]
        "logps/chosen": -4.25,
        "logps/rejected": -3.75,
    }
    assert set(stats) == set(expected)
    for key, value in expected.items():
        assert stats[key].ndim == 0 and not stats[key].requires_grad, key
        assert stats[key].item() == pytest.approx(value, abs=1e-6), key


def test_policy_equal_to_reference_gives_log_two_and_no_accuracy():
    logps = torch.tensor([-2.0, -7.0, -1.5])
    loss, stats = dpo_loss(logps, logps - 1, logps, logps - 1, beta=0.3)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert stats["rewards/accuracy"].item() == 0.0  # ties are not counted as right
    assert stats["rewards/margin"].item() == 0.0


def test_beta_dependence():
    # β = 1: ½(−log σ(2) − log σ(−1)) = ½(0.1269280 + 1.3132617) = 0.7200948
    loss, stats = dpo_loss(**pairs(), beta=1.0)
    assert loss.item() == pytest.approx(0.7200948, abs=1e-6)
    assert stats["rewards/margin"].item() == pytest.approx(0.5, abs=1e-6)  # scales with β
    # β → 0: every pair's loss tends to log 2 whatever the log-probs.
    loss, _ = dpo_loss(**pairs(), beta=1e-6)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)
    # A pair ranked right (h > 0) costs less the larger β; one ranked wrong costs more.
    right = [torch.tensor([v]) for v in (-3.0, -5.0, -4.0, -4.0)]
    wrong = [torch.tensor([v]) for v in (-5.0, -3.0, -4.0, -4.0)]
    assert dpo_loss(*right, beta=1.0)[0] < dpo_loss(*right, beta=0.1)[0]
    assert dpo_loss(*wrong, beta=1.0)[0] > dpo_loss(*wrong, beta=0.1)[0]


def test_gradient_sign():
    inputs = pairs(requires_grad=True)
    loss, _ = dpo_loss(**inputs, beta=0.5)
    loss.backward()
    # dL/d log π_θ(y_w) = −(β/N)·σ(−β·h): −0.25·σ(−1) = −0.0672353, −0.25·σ(0.5) = −0.1556148
    expected = torch.tensor([-0.25 * sigmoid(-1.0), -0.25 * sigmoid(0.5)])
    torch.testing.assert_close(inputs["policy_chosen"].grad, expected)
    torch.testing.assert_close(inputs["policy_rejected"].grad, -expected)
    # The reference is frozen: no gradient reaches it.
    assert inputs["ref_chosen"].grad is None and inputs["ref_rejected"].grad is None

    # Raising a chosen log-prob lowers the loss; raising a rejected one raises it.
    base = dpo_loss(**pairs(), beta=0.5)[0]
    up = pairs()
    up["policy_chosen"] = up["policy_chosen"] + torch.tensor([0.1, 0.0])
    assert dpo_loss(**up, beta=0.5)[0] < base
    up = pairs()
    up["policy_rejected"] = up["policy_rejected"] + torch.tensor([0.0, 0.1])
    assert dpo_loss(**up, beta=0.5)[0] > base


def test_ipo_pushes_back_past_its_target():
    # IPO regresses h onto 1/(2β) = 1: pair 0 (h = 2) overshoots, pair 1 (h = −1) falls short.
    # dL/d log π_θ(y_w) = (2/N)·(h − 1) = [1.0, −2.0]
    inputs = pairs(requires_grad=True)
    loss, _ = dpo_loss(**inputs, beta=0.5, loss_type="ipo")
    loss.backward()
    torch.testing.assert_close(inputs["policy_chosen"].grad, torch.tensor([1.0, -2.0]))
    torch.testing.assert_close(inputs["policy_rejected"].grad, torch.tensor([-1.0, 2.0]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(loss_type="hinge"), "unknown DPO loss_type 'hinge'"),
        (dict(beta=0.0), "beta must be positive"),
        (dict(label_smoothing=0.5), "label_smoothing must lie in"),
        (dict(loss_type="ipo", label_smoothing=0.1), "label_smoothing applies to loss_type"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dpo_loss(**pairs(), **kwargs)


def test_bad_shapes():
    inputs = pairs()
    inputs["ref_rejected"] = torch.tensor([-1.0, -2.0, -3.0])
    with pytest.raises(ValueError, match="ref_rejected"):
        dpo_loss(**inputs)
    with pytest.raises(ValueError, match="N ≥ 1"):
        dpo_loss(*[torch.zeros(0)] * 4)


def test_kl_penalty_by_hand():
    policy = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.2, -9.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-1.0, -0.2, -1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # k2 = ½d², d = policy − ref: row 0: d = [0.5, −1, 0] → 0.125 + 0.5 + 0 = 0.625;
    # row 1: d = [−0.5, 0, (−8 masked)] → 0.125
    penalty = kl_penalty(policy, ref, mask)
    torch.testing.assert_close(penalty, torch.tensor([0.625, 0.125]))
    # its gradient is d on real tokens (pulls each log-prob toward the reference), 0 on padding
    penalty.sum().backward()
    torch.testing.assert_close(policy.grad, torch.tensor([[0.5, -1.0, 0.0], [-0.5, 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"three \[N, T\] tensors"):
        kl_penalty(policy, ref[:, :2], mask)


def test_weights_drop_pairs_and_a_denominator_rescales():
    """A weight of 0 drops a pair (a tied group) from the loss and the statistics; a given
    denominator divides the weighted sum (several learners pass the global pair count)."""
    inputs = [torch.tensor(v) for v in (POLICY_CHOSEN, POLICY_REJECTED, REF_CHOSEN, REF_REJECTED)]
    only_first, stats = dpo_loss(*inputs, beta=1.0, weights=torch.tensor([1.0, 0.0]))
    assert only_first.item() == pytest.approx(-math.log(sigmoid(2.0)))
    assert stats["rewards/accuracy"].item() == 1.0  # pair 1 (ranked wrong) is not counted
    halved, _ = dpo_loss(*inputs, beta=1.0, weights=torch.tensor([1.0, 0.0]), denominator=2.0)
    assert halved.item() == pytest.approx(only_first.item() / 2)
    _, none_kept = dpo_loss(*inputs, beta=1.0, weights=torch.zeros(2))
    assert math.isnan(none_kept["rewards/accuracy"].item())

"""Statistics over the real tokens of right-padded [N, T] batches, alone or across learners.

``mask`` is true on real tokens; padding, even NaN, never leaks into a result. With several
data-parallel learners a statistic "over the batch" means over the global batch:
:func:`global_sum` adds a tensor over all learners (torch.distributed all-reduce; the identity
on one learner), and :func:`whiten` uses it for its mean and variance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist


def global_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over all data-parallel learners (``x`` itself on one learner)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        x = x.detach().clone()
        dist.all_reduce(x)
    return x


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), x, 0).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the real tokens."""
    mask = mask.bool()
    if not mask.any():
        raise ValueError("masked mean over a batch with no real tokens (mask is all zero)")
    return masked_sum(x, mask) / mask.sum()


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` over the real tokens; ``unbiased`` applies Bessel's correction."""
    mask = mask.bool()
    count = int(mask.sum())
    if unbiased and count < 2:
        raise ValueError(f"unbiased masked variance needs at least 2 real tokens, got {count}")
    centred = x - masked_mean(x, mask)
    return masked_sum(centred * centred, mask) / (count - 1 if unbiased else count)


def whiten(
    x: torch.Tensor,
    mask: torch.Tensor,
    eps: float = 1e-8,
    total: Callable[[torch.Tensor], torch.Tensor] = global_sum,
) -> torch.Tensor:
    """``x`` normalised to zero mean and unit (unbiased) variance over the real tokens of the
    batch, 0 on padding (docs/formulation.md eq. 10). ``total`` turns local sums into batch
    sums; the default, :func:`global_sum`, makes the batch the global one across learners."""
    mask = mask.bool()
    count = total(mask.sum().to(x.dtype))
    if count < 2:
        raise ValueError(f"whitening needs at least 2 real tokens, got {int(count)}")
    mean = total(masked_sum(x, mask)) / count
    centred = x - mean
    var = total(masked_sum(centred * centred, mask)) / (count - 1)
    return torch.where(mask, centred * torch.rsqrt(var + eps), 0)

"""The soft Spearman rank loss: exact in the limit, finite gradients, no n-squared memory."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from flexselect.training.loss import hard_rank, soft_rank, soft_spearman, spearman, spearman_loss


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operation produces (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_hard_rank_averages_ties():
    assert hard_rank(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_soft_rank_at_a_small_temperature_is_the_hard_rank_ties_included():
    x = torch.tensor([0.3, -1.0, 0.3, 2.0, 0.3])
    assert torch.allclose(soft_rank(x, tau=1e-4), hard_rank(x), atol=1e-6)


def test_soft_ranks_converge_to_hard_ranks_as_the_temperature_falls():
    torch.manual_seed(0)
    x = torch.randn(500)
    temperatures = (1.0, 0.1, 0.01, 0.001, 1e-4)
    gaps = [float((soft_rank(x, tau=tau) - hard_rank(x)).abs().mean()) for tau in temperatures]
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 0.05  # mean rank error; ranks run 1..500


def test_soft_spearman_reaches_the_exact_correlation_at_a_low_temperature():
    torch.manual_seed(0)
    target = torch.randn(500)
    pred = target + torch.randn(500)
    exact = spearman(pred, target)
    assert abs(float(soft_spearman(pred, target, tau=1.0)) - exact) > 1e-3
    assert abs(float(soft_spearman(pred, target, tau=1e-3)) - exact) < 1e-4


def test_soft_rank_gradient_matches_finite_differences():
    x = torch.randn(40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: soft_rank(v, tau=0.3, block=7), (x,))


@pytest.mark.parametrize(
    "pred",
    [torch.zeros(64), torch.tensor([1.0, 1.0, 2.0, 2.0] * 16), torch.arange(64.0) // 8],
    ids=["all-tied", "two-values", "blocks-of-ties"],
)
def test_gradients_are_finite_when_predictions_tie(pred):
    pred = pred.clone().requires_grad_(True)
    target = torch.arange(64.0) % 5  # the teacher ties too
    spearman_loss(pred, target, tau=0.1).backward()
    assert torch.isfinite(pred.grad).all()


def test_a_16k_token_group_has_finite_gradients_without_an_n_squared_tensor():
    n, block = 16384, 1024
    torch.manual_seed(0)
    pred = torch.randn(n, requires_grad=True)
    target = torch.randn(n)
    with LargestTensor() as probe:
        spearman_loss(pred, target, tau=0.1, block=block).backward()
    assert torch.isfinite(pred.grad).all()
    assert probe.largest == block * n  # one block of pairs at a time; the full matrix would be n * n

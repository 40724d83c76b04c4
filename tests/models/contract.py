"""The model contract's eval-mode checks, shared by the per-network tests (one definition of what
an eval forward and a single requested tap must give)."""

from __future__ import annotations

import torch


def check_eval_forward(net: torch.nn.Module, left: torch.Tensor, right: torch.Tensor, max_disp: int) -> None:
    """Eval: the final disparity only (no aux, no taps), finite, input-sized, within [0, max_disp − 1]."""
    net.eval()
    with torch.no_grad():
        out = net(left, right)
    assert out.disparity.shape == (left.shape[0], *left.shape[-2:])
    assert out.aux == [] and out.taps == {}
    assert torch.isfinite(out.disparity).all()
    assert (out.disparity >= 0).all() and (out.disparity <= max_disp - 1).all()


def check_tap_alone(
    net: torch.nn.Module, left: torch.Tensor, right: torch.Tensor, tap: str, shape: tuple[int, ...]
) -> None:
    """Asking for one tap returns that tap only, of ``shape``, finite."""
    net.eval()
    with torch.no_grad():
        out = net(left, right, taps=[tap])
    assert set(out.taps) == {tap}
    assert tuple(out.taps[tap].shape) == shape
    assert torch.isfinite(out.taps[tap]).all()

"""The shared building blocks: the 3-D convolution's float32 training step under CPU autocast."""

from __future__ import annotations

import torch

from stereodistill.models.blocks import Conv3d


def test_a_bf16_training_step_of_a_small_3d_convolution_gets_a_correct_gradient():
    # oneDNN's bf16 weight gradient of this shape (an hourglass bottleneck of a tiny crop) read memory
    # it never wrote under torch 2.13: NaN, inf or values 15× off, in every call measured.
    torch.manual_seed(0)
    conv = Conv3d(32, 32, 3, padding=1, bias=False)
    x = torch.randn(2, 32, 2, 4, 8)
    weights = torch.randn(2, 32, 2, 4, 8)
    reference = torch.nn.functional.conv3d(x, conv.weight, None, 1, 1)  # float32, no autocast
    (expected,) = torch.autograd.grad((reference * weights).sum(), conv.weight)
    for _ in range(30):
        torch.full((1 << 20,), float("nan"))  # leave garbage where the kernel's scratch memory comes from
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
        (grad,) = torch.autograd.grad((out.float() * weights).sum(), conv.weight)
        assert torch.isfinite(grad).all()
        # Within what a bf16 computation of it could give (a float32 one gives it to the last bits).
        torch.testing.assert_close(grad, expected, rtol=0.05, atol=0.05 * float(expected.abs().max()))


def test_inference_under_autocast_still_runs_in_the_low_precision():
    conv = Conv3d(4, 4, 3, padding=1, bias=False)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(torch.randn(2, 4, 2, 4, 8)).dtype == torch.bfloat16

"""The census matching cost of ``lean``'s ``census`` knob: against a per-disparity reference, its
invariance to brightness, and where it peaks on a shifted image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stereodistill.models.census_cost import census_bits, census_cost_quarter


def textured(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth random texture (no ties between neighbours), B×3×H×W in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, height // 2, width // 2, generator=g)
    return F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def reference_quarter(left: torch.Tensor, right: torch.Tensor, max_disp: int, window: int) -> torch.Tensor:
    """The same cost the slow way: Hamming distance per 1/2-resolution disparity, one at a time."""
    grey = [F.avg_pool2d(v.mean(1, keepdim=True), 2) for v in (left, right)]
    bits_l, bits_r = census_bits(grey[0], window), census_bits(grey[1], window)
    half = torch.zeros(left.shape[0], max_disp // 2, *bits_l.shape[-2:])
    for d in range(max_disp // 2):
        differing = (bits_l[..., d:] != bits_r[..., : bits_r.shape[-1] - d]).float().mean(1)
        half[:, d, :, d:] = 1 - 2 * differing
    pooled = F.avg_pool2d(half, 2)
    bins = []
    for k in range(max_disp // 4):
        around = [pooled[:, j] for j in (2 * k - 1, 2 * k, 2 * k + 1) if 0 <= j < max_disp // 2]
        bins.append(torch.stack(around).amax(0))
    return torch.stack(bins, 1)


def test_census_cost_matches_the_per_disparity_reference():
    left, right = textured(32, 64, seed=1), textured(32, 64, seed=2)
    torch.testing.assert_close(census_cost_quarter(left, right, 16), reference_quarter(left, right, 16, 5))
    torch.testing.assert_close(census_cost_quarter(left, right, 16, 3), reference_quarter(left, right, 16, 3))


def test_census_cost_ignores_a_brightness_change_between_the_views():
    left, right = textured(32, 64, seed=1), textured(32, 64, seed=2)
    darker = 0.5 * right + 0.2  # gain and offset: the order of every pair of pixels is kept
    change = census_cost_quarter(left, darker, 16) - census_cost_quarter(left, right, 16)
    assert change.abs().max() < 0.1  # a rare bit may flip where rounding breaks a near tie
    assert change.abs().mean() < 1e-3


def test_census_cost_peaks_at_the_shift_of_the_right_view():
    scene = textured(32, 96)
    for shift in (4, 8, 12):
        left, right = scene[..., :80], scene[..., shift : shift + 80]  # left[x] = right[x − shift]
        cost = census_cost_quarter(left, right, 16)
        interior = cost[..., 1:-1, 4:-1]  # away from the borders the windows see past
        assert (interior.argmax(1) == shift // 4).float().mean() > 0.9
        assert cost.shape == (1, 4, 8, 20)
        assert cost[..., :, :1].eq(0).any()  # no right pixel for the far bins at the left edge

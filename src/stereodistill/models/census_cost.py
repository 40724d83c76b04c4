"""A census matching cost at 1/4 resolution: the classical signal that does not depend on the domain.

The census transform (Zabih & Woodfill, 1994) replaces each pixel by the bits "is this neighbour
brighter than the centre?" over a window; two pixels match when few of their bits differ. It does
not change when one camera's brightness does (gain and offset exactly, a gamma nearly: the grey
image here is a mean of channels, averaged over 2×2 pixels), which is why classical matchers built on
it (SGM with census costs, as in much embedded stereo hardware) work on photographs they were never
tuned for, while features learned on synthetic scenes carry those scenes' statistics with them.

Here it is computed on the grey image at 1/2 resolution and compared at every 1/2-resolution
disparity d. With the bits written as ±1, the share of agreeing bits is a correlation: the mean of
``left · right`` over the bits is 1 − 2·(differing bits)/K, a similarity in [−1, 1] (1: every bit
agrees). It is wanted on the 1/4 grid of the learned volume: the mean over each 2×2 cell of 1/2
pixels, and for bin k (disparity 4k at full resolution, 2k at 1/2) the best of d = 2k − 1, 2k, 2k + 1.
The cell means come out of the correlation itself: with each 2×2 cell's bits stacked as 4K channels
at 1/4 (``pixel_unshuffle``), the even disparities 2k are the 1/4 correlation at k, and the odd ones
2k + 1 the same with the right view's bits moved one 1/2 pixel right first. So two banded
correlations at 1/4 (those of the learned volumes, one group, no loop over disparities) give both,
with as many multiplications as correlating at 1/2 would take, but no 1/2-resolution volume to hold
and pool. Entry ``[..., k, y, x]``
follows the convention of :mod:`~stereodistill.models.cost_volume`: 0 where the right pixel would lie
left of the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stereodistill.models.cost_volume import groupwise_correlation_volume


def census_bits(gray: torch.Tensor, window: int) -> torch.Tensor:
    """B×1×H×W → B×(window²−1)×H×W of 0/1: each neighbour brighter than the centre (edges replicated)."""
    radius = window // 2
    padded = F.pad(gray, (radius,) * 4, mode="replicate")
    patches = F.unfold(padded, window).view(gray.shape[0], window * window, *gray.shape[-2:])
    centre = window * window // 2
    neighbours = torch.cat((patches[:, :centre], patches[:, centre + 1 :]), 1)
    return (neighbours > gray).to(gray.dtype)


def census_cost_quarter(left: torch.Tensor, right: torch.Tensor, max_disp: int, window: int = 5) -> torch.Tensor:
    """B×3×H×W images (H, W multiples of 4) → B×(max_disp/4)×H/4×W/4 census similarity on the 1/4 grid."""
    with torch.no_grad():  # a fixed function of the images: nothing to learn, nothing to differentiate
        grey = [F.avg_pool2d(view.float().mean(1, keepdim=True), 2) for view in (left, right)]
        signs_left, signs_right = (2 * census_bits(view, window) - 1 for view in grey)
        cells_left = F.pixel_unshuffle(signs_left, 2)
        bins = max_disp // 4
        even = groupwise_correlation_volume(cells_left, F.pixel_unshuffle(signs_right, 2), bins, 1)[:, 0]
        moved = F.pad(signs_right, (1, 0))[..., :-1]  # moved[x] = right[x − 1]; 0 (no bits) at x = 0
        odd = groupwise_correlation_volume(cells_left, F.pixel_unshuffle(moved, 2), bins, 1)[:, 0]  # d = 2k + 1
        best = torch.maximum(even, odd)
        best[:, 1:] = torch.maximum(best[:, 1:], odd[:, :-1])  # d = 2k − 1
        return best.to(left.dtype)

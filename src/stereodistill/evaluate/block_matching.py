"""Classical block matching: a learning-free reference every learned model must beat.

It gives the evaluation pipeline something honest to measure before any network is trained (the
quickstart's smoke run) and a floor in reports. Fully vectorised: the cost volume is built from a
strided view of the padded right image, never with a loop over disparities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _census_like(image: torch.Tensor) -> torch.Tensor:
    """Zero-mean, unit-contrast gray image: robust to the gain/bias differences between views."""
    gray = image.mean(dim=1, keepdim=True)
    mean = F.avg_pool2d(gray, 5, stride=1, padding=2, count_include_pad=False)
    var = F.avg_pool2d((gray - mean) ** 2, 5, stride=1, padding=2, count_include_pad=False)
    return (gray - mean) / (var.sqrt() + 1e-3)


@torch.no_grad()
def block_matching(left: torch.Tensor, right: torch.Tensor, max_disp: int, radius: int = 4) -> torch.Tensor:
    """Winner-take-all SAD block matching with sub-pixel parabola refinement.

    ``left``/``right``: B×3×H×W in [0, 1]. Returns B×H×W disparities in [0, max_disp − 1].
    """
    if left.shape != right.shape:
        raise ValueError(f"left {tuple(left.shape)} and right {tuple(right.shape)} differ in size")
    lf, rf = _census_like(left), _census_like(right)
    width = lf.shape[-1]
    # rf padded on the left by D−1: window k of the unfolded view is the right image shifted by D−1−k.
    padded = F.pad(rf, (max_disp - 1, 0, 0, 0), mode="replicate")
    windows = padded.unfold(-1, width, 1)  # B×1×H×D×W, a view
    cost = (windows.flip(-2) - lf.unsqueeze(-2)).abs().squeeze(1).permute(0, 2, 1, 3)  # B×D×H×W
    cost = F.avg_pool2d(cost, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    best = cost.argmin(dim=1, keepdim=True)
    # Sub-pixel: fit a parabola through the costs at best−1, best, best+1.
    lo = cost.gather(1, (best - 1).clamp(min=0))
    mid = cost.gather(1, best)
    hi = cost.gather(1, (best + 1).clamp(max=max_disp - 1))
    denom = lo - 2 * mid + hi
    offset = torch.where(denom > 1e-6, 0.5 * (lo - hi) / denom.clamp(min=1e-6), torch.zeros_like(denom))
    return (best.float() + offset.clamp(-0.5, 0.5)).clamp(0, max_disp - 1).squeeze(1)

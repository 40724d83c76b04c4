"""How well a disparity explains a stereo pair, with no ground truth: the left view against the
right view warped by it.

Two uses. On footage without ground truth it is the one check of a teacher's labels a user can run:
if the student's own disparity already reconstructs the left view better than the labels do,
adapting the student toward them will likely make it worse (measured on Motorcycle: a quickstart
teacher at 2.06 px, its student at 1.40 px, photometric errors 0.037 against 0.034 on the kept
pixels; SGBM's labels 0.028 against the student's 0.045). A mean over many pixels, it ranks labels,
not pixels. And as a training loss (:func:`self_supervised_loss`: SSIM and L1 of the reconstruction,
plus an edge-aware smoothness, as in Monodepth and MADNet's online adaptation) it teaches a network
from the images alone. Measured on Motorcycle (docs/results.md) it sharpens the textured pixels a
lot and harms the occluded and textureless ones, where a reconstruction proves nothing. Compared
per neighbourhood (:func:`local_reconstruction_error`), it is also ``adapt``'s photometric gate:
which of the teacher's and the student's disparities explains each part of the pair better.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stereodistill.distill.losses import masked_mean
from stereodistill.models.guided_refine import warp_right

SSIM_C1 = 0.01**2  # SSIM's stabilisers for images in [0, 1]
SSIM_C2 = 0.03**2


def inside_right_view(disparity: torch.Tensor) -> torch.Tensor:
    """B×H×W mask of the left pixels whose match (x − d) lands inside the right view: elsewhere the
    warp replicates the border and its difference means nothing."""
    columns = torch.arange(disparity.shape[-1], device=disparity.device, dtype=disparity.dtype)
    return (columns - disparity) >= 0


def visible_in_right_view(disparity: torch.Tensor, tolerance: float = 0.5) -> torch.Tensor:
    """B×H×W mask of the left pixels the right view sees, by the disparity itself: a pixel is hidden
    when a pixel to its right lands further left in the right view (x' − d(x') < x − d(x) − tolerance),
    i.e. a nearer surface covers its match. Occluded pixels have no match to compare, and a
    photometric loss there pulls the disparity toward whatever background looks alike."""
    landing = torch.arange(disparity.shape[-1], device=disparity.device, dtype=disparity.dtype) - disparity
    nearest_left = landing.flip(-1).cummin(-1).values.flip(-1)  # min over x' >= x of x' − d(x')
    beyond = F.pad(nearest_left[..., 1:], (0, 1), value=float("inf"))  # min over x' > x
    return beyond >= landing - tolerance


def photometric_error(
    left: torch.Tensor, right: torch.Tensor, disparity: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """B×H×W mean absolute colour difference between the left view and the right view warped by the
    left-view ``disparity``, and the B×H×W mask of the pixels whose match lands inside the right view."""
    error = (left - warp_right(right, disparity)).abs().mean(1)
    return error, inside_right_view(disparity)


def ssim_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """B×H×W (1 − SSIM) / 2 over 3×3 windows (reflected at the border), averaged over channels: 0 where
    the two images agree in local mean, contrast and structure."""
    pad = (1, 1, 1, 1)
    x, y = F.pad(x, pad, mode="reflect"), F.pad(y, pad, mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    var_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    var_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    cov = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    )
    return ((1 - ssim) / 2).clamp(0, 1).mean(1)


def reconstruction_error(left: torch.Tensor, right: torch.Tensor, disparity: torch.Tensor, ssim: float) -> torch.Tensor:
    """B×H×W ``ssim`` × SSIM distance + (1 − ``ssim``) × L1 between the left view and the right view
    warped by ``disparity``."""
    warped = warp_right(right, disparity)
    return ssim * ssim_distance(left, warped) + (1 - ssim) * (left - warped).abs().mean(1)


def reconstruction_loss(
    left: torch.Tensor,
    right: torch.Tensor,
    disparity: torch.Tensor,
    ssim: float,
    occlusion: bool = True,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over the pixels that land inside the right view, that (``occlusion``) the right view sees
    by the disparity itself, and that ``mask`` (B×H×W) keeps, of ``ssim`` × SSIM distance +
    (1 − ``ssim``) × L1 between the left view and the warped right view."""
    error = reconstruction_error(left, right, disparity, ssim)
    keep = inside_right_view(disparity.detach())
    if occlusion:
        keep &= visible_in_right_view(disparity.detach())
    if mask is not None:
        keep &= mask
    return masked_mean(error, keep)


def local_reconstruction_error(
    left: torch.Tensor, right: torch.Tensor, disparity: torch.Tensor, window: int = 5, ssim: float = 0.85
) -> torch.Tensor:
    """B×H×W reconstruction error (``ssim`` × SSIM distance + the rest L1) averaged over ``window`` ×
    ``window`` pixels, a match outside the right view counting as the worst error (1): which of two
    disparities explains each neighbourhood of the pair better, with no ground truth."""
    error = reconstruction_error(left, right, disparity, ssim)
    error = torch.where(inside_right_view(disparity), error, torch.ones_like(error))
    return F.avg_pool2d(error[:, None], window, 1, window // 2, count_include_pad=False)[:, 0]


def smoothness_loss(disparity: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness: the disparity's first differences (scaled by its mean, so the term does
    not reward shrinking it), weighted down where the image has an edge (exp(−|∇I|))."""
    scaled = disparity / disparity.detach().mean(dim=(1, 2), keepdim=True).clamp(min=1e-3)
    dx, dy = (scaled[..., :, 1:] - scaled[..., :, :-1]).abs(), (scaled[..., 1:, :] - scaled[..., :-1, :]).abs()
    edge_x = torch.exp(-(image[..., :, 1:] - image[..., :, :-1]).abs().mean(1))
    edge_y = torch.exp(-(image[..., 1:, :] - image[..., :-1, :]).abs().mean(1))
    return (dx * edge_x).mean() + (dy * edge_y).mean()


def self_supervised_loss(
    predictions: Sequence[torch.Tensor],
    left: torch.Tensor,
    right: torch.Tensor,
    weights: Sequence[float],
    *,
    ssim: float = 0.85,
    smoothness: float = 0.01,
    occlusion: bool = True,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ_k w_k · (reconstruction + ``smoothness`` × smoothness) over a network's full-resolution
    predictions (coarsest first, weights matched from the end as for the supervised loss), for
    B×3×H×W images in [0, 1]: a loss that needs no ground truth. ``mask`` (B×H×W) restricts the
    reconstruction, not the smoothness."""
    used = list(weights)[len(weights) - len(predictions) :]
    return sum(
        w * (reconstruction_loss(left, right, pred, ssim, occlusion, mask) + smoothness * smoothness_loss(pred, left))
        for w, pred in zip(used, predictions, strict=True)
    )

"""Where a distillation term applies: masks at the resolution of the tap being compared.

- ``valid_gt``: pixels with valid ground truth (the supervised loss's own mask).
- ``teacher_correct``: valid pixels where the teacher's error is under ``threshold`` px, so the
  student is not taught the teacher's mistakes.
- ``confidence``: pixels where the teacher's distribution peaks above ``threshold`` (probability).
- ``lr_consistent``: pixels where the teacher's disparity agrees within ``threshold`` px with its
  disparity of the right view (the teacher on the mirrored, swapped pair) read where the pixel
  lands; occlusions and mismatches fail it. Needs no ground truth, like ``confidence``.

Masks are computed at full resolution and reduced to a tap's H×W by majority vote (area average
> 0.5), so a 1/4-resolution cell counts when most of the pixels it covers do. A tap of an image whose
size is not a multiple of its scale s has ceil(H/s) × ceil(W/s) cells, the first row and the last
column partly over the padding above and to the right (``models.base``): the vote counts only the
image pixels each cell covers.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from stereodistill.errors import ConfigError

MASKS = ("valid_gt", "teacher_correct", "confidence", "lr_consistent")
#: The masks that read the ground truth: an error on pairs that have none.
GROUND_TRUTH_MASKS = ("valid_gt", "teacher_correct")
DEFAULT_THRESHOLDS = {"teacher_correct": 3.0, "confidence": 0.5, "lr_consistent": 1.0}


def right_view_disparity(model: torch.nn.Module, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """The right view's disparity (B×H×W) from a left-view network: run on the mirrored pair with
    the views swapped, then mirrored back."""
    return model(right.flip(-1), left.flip(-1)).disparity.flip(-1)


def left_right_consistent(disparity: torch.Tensor, right_disparity: torch.Tensor, threshold: float) -> torch.Tensor:
    """B×H×W bool: the left pixel lands inside the right view (``x − d``) and the right view's
    disparity there agrees within ``threshold`` px."""
    # In float32 whatever the network's dtype: bf16 cannot tell columns 2 apart beyond 256.
    disparity, right_disparity = disparity.float(), right_disparity.float()
    width = disparity.shape[-1]
    columns = torch.arange(width, device=disparity.device).expand_as(disparity)
    landing = (columns - disparity).round().long()
    inside = (landing >= 0) & (landing < width)
    seen = torch.gather(right_disparity, -1, landing.clamp(0, width - 1))
    return inside & ((seen - disparity).abs() <= threshold)


@functools.lru_cache(maxsize=64)  # asked every step for the same few (image, tap) sizes
def tap_scale(image: tuple[int, int], tap: tuple[int, int]) -> int | None:
    """The integer scale s at which an H×W image gives an h×w tap (h = ceil(H/s), w = ceil(W/s));
    a power of two where several fit, None where none does."""
    (height, width), (h, w) = image, tap
    fits = [s for s in range(1, max(height, width) + 1) if -(-height // s) == h and -(-width // s) == w]
    powers = [s for s in fits if s & (s - 1) == 0]
    return (powers or fits or [None])[0]


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×H×W bool → B×h×w bool: majority vote of the image pixels each cell covers when shrinking
    (cells aligned as the networks' taps are, padding above and to the right), nearest when growing."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    values = mask.float().unsqueeze(1)
    if size[0] > mask.shape[-2] or size[1] > mask.shape[-1]:
        return (F.interpolate(values, size=size, mode="nearest") > 0.5).squeeze(1)
    scale = tap_scale(tuple(mask.shape[-2:]), tuple(size))
    if scale is None:  # not a tap of this image (a map resized by an adapter): areas as they fall
        return (F.adaptive_avg_pool2d(values, size) > 0.5).squeeze(1)
    padding = (0, -mask.shape[-1] % scale, -mask.shape[-2] % scale, 0)  # left, right, top, bottom
    kept = F.avg_pool2d(F.pad(values, padding), scale)
    covered = F.avg_pool2d(F.pad(torch.ones_like(values[:1]), padding), scale)  # image share of each cell
    return (kept > 0.5 * covered).squeeze(1)


def full_resolution_mask(
    kind: str,
    *,
    valid: torch.Tensor,
    gt: torch.Tensor,
    teacher_disparity: torch.Tensor | None = None,
    teacher_prob: torch.Tensor | None = None,
    teacher_right_disparity: torch.Tensor | None = None,
    threshold: float | None = None,
) -> torch.Tensor:
    """The B×H×W bool mask of ``kind`` at input resolution."""
    if kind == "valid_gt":
        return valid
    threshold = DEFAULT_THRESHOLDS.get(kind) if threshold is None else threshold
    if kind == "teacher_correct":
        if teacher_disparity is None:
            raise ValueError("teacher_correct needs the teacher's disparity")
        return valid & ((teacher_disparity.detach() - gt).abs() < threshold)
    if kind == "confidence":
        if teacher_prob is None:
            raise ValueError("confidence needs the teacher's 'prob' tap")
        return teacher_prob.detach().amax(1) >= threshold
    if kind == "lr_consistent":
        if teacher_disparity is None or teacher_right_disparity is None:
            raise ValueError("lr_consistent needs the teacher's disparity of both views")
        return left_right_consistent(teacher_disparity.detach(), teacher_right_disparity.detach(), threshold)
    raise ConfigError(f"unknown mask {kind!r} (expected one of {', '.join(MASKS)})")

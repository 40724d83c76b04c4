"""Where a distillation term applies: masks at the resolution of the tap being compared.

- ``valid_gt``: pixels with valid ground truth (the supervised loss's own mask).
- ``teacher_correct``: valid pixels where the teacher's error is under ``threshold`` px, so the
  student is not taught the teacher's mistakes.
- ``confidence``: pixels where the teacher's distribution peaks above ``threshold`` (probability).

Masks are computed at full resolution and reduced to a tap's H×W by majority vote (area average
> 0.5), so a 1/4-resolution cell counts when most of the pixels it covers do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stereodistill.errors import ConfigError

MASKS = ("valid_gt", "teacher_correct", "confidence")
DEFAULT_THRESHOLDS = {"teacher_correct": 3.0, "confidence": 0.5}


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×H×W bool → B×h×w bool: majority vote when shrinking, nearest when growing."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    values = mask.float().unsqueeze(1)
    if size[0] <= mask.shape[-2] and size[1] <= mask.shape[-1]:
        return (F.adaptive_avg_pool2d(values, size) > 0.5).squeeze(1)
    return (F.interpolate(values, size=size, mode="nearest") > 0.5).squeeze(1)


def full_resolution_mask(
    kind: str,
    *,
    valid: torch.Tensor,
    gt: torch.Tensor,
    teacher_disparity: torch.Tensor | None = None,
    teacher_prob: torch.Tensor | None = None,
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
    raise ConfigError(f"unknown mask {kind!r} (expected one of {', '.join(MASKS)})")

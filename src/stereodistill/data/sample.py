"""The sample dict of docs/design.md and the one definition of which ground-truth pixels are valid.

A sample is ``{"left", "right": 3×H×W float32 in [0, 1], "disp": H×W float32 (positive, left view),
"valid": H×W bool, "meta": dict}``. Every reader builds its samples through :func:`make_sample`, so
the size checks and the validity rule live in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from stereodistill.errors import DataError


def valid_mask(disp: np.ndarray, max_disp: float | None = None, nonoccluded: np.ndarray | None = None) -> np.ndarray:
    """Valid = finite GT, GT > 0, GT < ``max_disp`` (when given) and non-occluded (when a mask exists)."""
    finite = np.isfinite(disp)
    safe = np.where(finite, disp, 0.0)
    valid = finite & (safe > 0)
    if max_disp is not None:
        valid &= safe < max_disp
    if nonoccluded is not None:
        valid &= nonoccluded.astype(bool)
    return valid


def ground_truth_coverage(
    disp: np.ndarray, max_disp: float | None = None, nonoccluded: np.ndarray | None = None
) -> dict[str, int]:
    """Pixels with a ground-truth value (finite, > 0) and those of them left out of the metrics, by
    reason: at or beyond ``max_disp``, or occluded (first reason wins), so a report can say what an
    evaluation does not cover."""
    finite = np.isfinite(disp)
    known = finite & (np.where(finite, disp, 0.0) > 0)
    beyond = known & (np.where(finite, disp, 0.0) >= max_disp) if max_disp is not None else np.zeros_like(known)
    occluded = known & ~beyond & ~nonoccluded.astype(bool) if nonoccluded is not None else np.zeros_like(known)
    return {"with_gt": int(known.sum()), "beyond_max_disp": int(beyond.sum()), "occluded": int(occluded.sum())}


def make_sample(
    left: np.ndarray,
    right: np.ndarray,
    disp: np.ndarray | None,
    *,
    meta: dict[str, Any],
    nonoccluded: np.ndarray | None = None,
    max_disp: float | None = None,
    paths: dict[str, Path | None] | None = None,
) -> dict[str, Any]:
    """Check sizes and build the sample dict from H×W×3 float images in [0, 1] and an H×W disparity.

    ``disp`` None means the dataset ships no ground truth (a test split): ``disp`` is then zeros and
    ``valid`` all false, and ``meta["has_gt"]`` is False. Sizes that disagree raise :class:`DataError`
    naming the offending file (from ``paths``: keys ``left``, ``right``, ``disp``, ``mask``).
    """
    paths = paths or {}
    if left.shape != right.shape:
        raise DataError(
            paths.get("right"),
            f"right image is {right.shape[0]}x{right.shape[1]} (HxW) but the left image "
            f"({paths.get('left')}) is {left.shape[0]}x{left.shape[1]}",
        )
    height, width = left.shape[:2]
    has_gt = disp is not None
    if disp is None:
        disp = np.zeros((height, width), np.float32)
        valid = np.zeros((height, width), bool)
    else:
        if disp.shape != (height, width):
            raise DataError(
                paths.get("disp"),
                f"disparity is {disp.shape[0]}x{disp.shape[-1]} (HxW) but the images are {height}x{width}",
            )
        if nonoccluded is not None and nonoccluded.shape != (height, width):
            raise DataError(
                paths.get("mask"),
                f"mask is {nonoccluded.shape[0]}x{nonoccluded.shape[-1]} (HxW) but the images are {height}x{width}",
            )
        valid = valid_mask(disp, max_disp, nonoccluded)
        meta = {**meta, "gt_coverage": ground_truth_coverage(disp, max_disp, nonoccluded)}
        disp = np.where(np.isfinite(disp), disp, 0.0).astype(np.float32)
    meta = {**meta, "has_gt": has_gt, "size": (height, width)}
    return {
        "left": torch.from_numpy(np.ascontiguousarray(left.transpose(2, 0, 1), dtype=np.float32)),
        "right": torch.from_numpy(np.ascontiguousarray(right.transpose(2, 0, 1), dtype=np.float32)),
        "disp": torch.from_numpy(np.ascontiguousarray(disp, dtype=np.float32)),
        "valid": torch.from_numpy(np.ascontiguousarray(valid)),
        "meta": meta,
    }

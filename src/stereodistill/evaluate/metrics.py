"""The one metric protocol of the project (README, "Metrics"): every script and report uses this module.

- EPE: mean |d̂ − d| over valid pixels, in pixels.
- D1: share of valid pixels whose error is > 3 px **and** > 5 % of |d| (KITTI's definition).
- bad-τ: share of valid pixels whose error is > τ px, τ ∈ {0.5, 1, 2, 3}.

"Pooled" divides sums over every valid pixel of a dataset; "per-image mean" averages each image's
value over the images that have at least one valid pixel. A non-finite prediction at a valid pixel
counts as an infinite error: it makes EPE infinite and counts as bad, never silently as correct;
such pixels are counted (``nonfinite``), so that strict JSON, which writes an infinite EPE as
``null``, still tells a diverged network from a value that is undefined.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)
METRIC_KEYS: tuple[str, ...] = ("epe", "d1", "bad0.5", "bad1", "bad2", "bad3")
_COUNT_KEYS = ("d1", "bad0.5", "bad1", "bad2", "bad3")
COVERAGE_KEYS = ("with_gt", "beyond_max_disp", "occluded")


def _bad_key(tau: float) -> str:
    return f"bad{tau:g}"


def error_sums(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image sums over the last two dims: ``n`` valid pixels, ``epe`` summed error, counts per metric.

    Inputs are H×W or B×H×W (any leading dims); the result has the leading shape.
    """
    if pred.shape != gt.shape or gt.shape != valid.shape:
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)}, gt {tuple(gt.shape)}, valid {tuple(valid.shape)}")
    pred = pred.detach().double()
    gt = gt.detach().double()
    valid = valid.bool() & torch.isfinite(gt)
    err = (pred - gt).abs()
    finite = torch.isfinite(err)
    err = torch.where(finite, err, torch.full_like(err, math.inf))
    err = torch.where(valid, err, torch.zeros_like(err))
    dims = (-2, -1)
    sums = {
        "n": valid.sum(dims).double(),
        "epe": err.sum(dims),
        "d1": (valid & (err > 3.0) & (err > 0.05 * gt.abs())).sum(dims).double(),
        "nonfinite": (valid & ~finite).sum(dims).double(),
    }
    for tau in THRESHOLDS:
        sums[_bad_key(tau)] = (valid & (err > tau)).sum(dims).double()
    return sums


def _ratios(sums: dict[str, float]) -> dict[str, float]:
    n = sums["n"]
    if n <= 0:
        return {key: math.nan for key in METRIC_KEYS}
    return {key: sums[key] / n for key in METRIC_KEYS}


def compute_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """Metrics pooled over every valid pixel of the given tensors (one image or a whole batch).

    Values are fractions (EPE in pixels); all are NaN when no pixel is valid.
    """
    sums = error_sums(pred, gt, valid)
    return _ratios({key: float(value.sum()) for key, value in sums.items()})


@dataclass
class MetricAccumulator:
    """Collects per-image sums over a dataset and reports pooled and per-image-mean metrics."""

    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("n", "nonfinite", *METRIC_KEYS), 0.0))
    per_image: list[dict[str, float | str | int]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # samples that could not be read
    #: Pixels with ground truth, and those left out (beyond max disparity, occluded): see ``coverage``.
    gt_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COVERAGE_KEYS, 0))

    def count_ground_truth(self, coverage: dict[str, int]) -> None:
        """Add one sample's ``meta["gt_coverage"]`` (from :func:`~stereodistill.data.sample.make_sample`)."""
        for key in COVERAGE_KEYS:
            self.gt_counts[key] += int(coverage.get(key, 0))

    def coverage(self) -> dict[str, float | int]:
        """Ground-truth pixels, those left out by reason, and the share left out (NaN without any)."""
        counts = dict(self.gt_counts)
        left_out = counts["beyond_max_disp"] + counts["occluded"]
        share = left_out / counts["with_gt"] if counts["with_gt"] else math.nan
        return {**counts, "left_out": left_out, "left_out_share": share}

    def update(
        self,
        pred: torch.Tensor,
        gt: torch.Tensor,
        valid: torch.Tensor,
        ids: Sequence[str] | None = None,
        paths: Sequence[str] | None = None,
    ) -> None:
        """Add a batch (B×H×W, or one H×W image); ``ids`` name the images in ``per_image``, and
        ``paths`` (their left images' files), when given, let a reader find them."""
        if pred.dim() == 2:
            pred, gt, valid = pred[None], gt[None], valid[None]
        sums = error_sums(pred, gt, valid)
        batch = pred.shape[0]
        ids = list(ids) if ids is not None else [str(len(self.per_image) + i) for i in range(batch)]
        if len(ids) != batch:
            raise ValueError(f"{len(ids)} ids for a batch of {batch}")
        for key, value in sums.items():
            self.totals[key] += float(value.sum())
        for i in range(batch):
            image = {key: float(value[i]) for key, value in sums.items()}
            where = {"left": paths[i]} if paths is not None else {}
            counts = {"n_valid": int(image["n"]), "n_nonfinite": int(image["nonfinite"])}
            self.per_image.append({"id": ids[i], **where, **counts, **_ratios(image)})

    def pooled(self) -> dict[str, float]:
        return _ratios(self.totals)

    def per_image_mean(self) -> dict[str, float]:
        scored = [row for row in self.per_image if int(row["n_valid"]) > 0]
        if not scored:
            return {key: math.nan for key in METRIC_KEYS}
        return {key: sum(float(row[key]) for row in scored) / len(scored) for key in METRIC_KEYS}

    def summary(self) -> dict[str, object]:
        """The JSON shape of ``eval --json``: pooled, per-image mean and the per-image rows, and the
        valid pixels whose prediction was not finite (an EPE of ``null`` with some is infinite)."""
        return {
            "pooled": self.pooled(),
            "nonfinite_pixels": int(self.totals["nonfinite"]),
            "per_image_mean": self.per_image_mean(),
            "per_image": self.per_image,
            "ground_truth": self.coverage(),
        }


def format_table(rows: Iterable[tuple[str, dict[str, float]]], keys: Sequence[str] = METRIC_KEYS) -> str:
    """A plain-text table: EPE in px, the rest in percent."""
    rows = list(rows)
    width = max([len(name) for name, _ in rows] + [8]) + 2
    lines = [f"{'':<{width}}" + "".join(f"{k:>9}" for k in keys)]
    for name, metrics in rows:
        cells = []
        for key in keys:
            value = metrics.get(key, math.nan)
            cells.append(f"{value:9.3f}" if key == "epe" else f"{100 * value:8.2f}%")
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)

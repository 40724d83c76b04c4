"""Dataset health check: which samples load, which are broken and why, and ground-truth statistics.

Run before training on a new download: a missing right image or a truncated PFM is found here, in
seconds, with its path, instead of hours into a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stereodistill.data.datasets.base import StereoDataset
from stereodistill.errors import DataError


@dataclass
class CheckReport:
    dataset: str
    root: str
    split: str
    n_samples: int = 0
    n_readable: int = 0
    n_with_gt: int = 0
    broken: list[dict[str, str]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    valid_fraction: float = math.nan
    disp_min: float = math.nan
    disp_max: float = math.nan
    disp_mean: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        out = [
            f"{self.dataset} at {self.root} (split {self.split}): {self.n_samples} pairs found, "
            f"{self.n_readable} valid pairs, {len(self.broken)} broken",
            f"  with ground truth: {self.n_with_gt}",
            "  image sizes: " + ", ".join(f"{size} ×{count}" for size, count in sorted(self.sizes.items())),
        ]
        if self.n_with_gt:
            out.append(
                f"  disparity over valid pixels: min {self.disp_min:.2f}, max {self.disp_max:.2f}, "
                f"mean {self.disp_mean:.2f}; valid share {100 * self.valid_fraction:.1f} %"
            )
        out.extend(f"  BROKEN {item['id']}: {item['error']}" for item in self.broken)
        return out


def check_dataset(dataset: StereoDataset, limit: int | None = None) -> CheckReport:
    """Load every sample (or the first ``limit``) and summarise; a broken sample never stops the check."""
    report = CheckReport(dataset=dataset.name, root=str(dataset.root), split=dataset.split)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    report.n_samples = count
    n_valid = n_pixels = 0
    total = 0.0
    lo, hi = math.inf, -math.inf
    for index in range(count):
        try:
            sample = dataset.load(index)
        except DataError as exc:
            report.broken.append({"id": dataset.files[index].id, "error": str(exc)})
            continue
        report.n_readable += 1
        height, width = sample["meta"]["size"]
        key = f"{height}x{width}"
        report.sizes[key] = report.sizes.get(key, 0) + 1
        if not sample["meta"]["has_gt"]:
            continue
        report.n_with_gt += 1
        valid = sample["valid"].numpy()
        values = sample["disp"].numpy()[valid]
        n_pixels += valid.size
        n_valid += values.size
        if values.size:
            total += float(values.sum(dtype=np.float64))
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    if n_pixels:
        report.valid_fraction = n_valid / n_pixels
    if n_valid:
        report.disp_min, report.disp_max, report.disp_mean = lo, hi, total / n_valid
    return report

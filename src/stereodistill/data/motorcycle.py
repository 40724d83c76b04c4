"""The real Middlebury 2014 Motorcycle pair that ships inside scikit-image's wheel.

It is the one real stereo pair with ground truth available on every machine without a download:
the quickstart evaluates on it zero-shot and the tests use it. It is written out as PNG + PFM + a
``pairs`` CSV so that it travels through the same reader a user's own data does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stereodistill.data.formats import write_image, write_pfm
from stereodistill.data.sample import make_sample
from stereodistill.fileio import write_text_atomic

NAME = "middlebury-motorcycle"


def load_motorcycle() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left, right (H×W×3 float32 in [0, 1]) and disparity (H×W, +inf where unknown), quarter size."""
    from skimage import data

    left, right, disp = data.stereo_motorcycle()
    return (left.astype(np.float32) / 255.0, right.astype(np.float32) / 255.0, disp.astype(np.float32))


def write_motorcycle(out: str | Path) -> Path:
    """Write the pair under ``out`` and return the path of its ``pairs`` CSV."""
    out = Path(out)
    left, right, disp = load_motorcycle()
    write_image(out / "im0.png", left)
    write_image(out / "im1.png", right)
    write_pfm(out / "disp0.pfm", disp)
    csv = out / "pairs.csv"
    write_text_atomic(csv, "left,right,disp\nim0.png,im1.png,disp0.pfm\n")
    return csv


class MotorcycleStereo:
    """The pair as a one-sample dataset in memory (``dataset: middlebury-motorcycle`` in a config), so
    that an evaluation needs no folder; pixels at or beyond ``max_disp`` are not valid."""

    def __init__(self, max_disp: float | None = None) -> None:
        left, right, disp = load_motorcycle()
        self.sample = make_sample(left, right, disp, meta={"dataset": NAME, "id": "Motorcycle"}, max_disp=max_disp)

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        if index != 0:
            raise IndexError(index)
        return {**self.sample, "meta": dict(self.sample["meta"])}

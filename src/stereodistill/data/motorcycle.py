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
from stereodistill.errors import ConfigError
from stereodistill.fileio import write_text_atomic

NAME = "middlebury-motorcycle"


def load_motorcycle() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left, right (H×W×3 float32 in [0, 1]) and disparity (H×W, +inf where unknown), quarter size."""
    from skimage import data

    left, right, disp = data.stereo_motorcycle()
    return (left.astype(np.float32) / 255.0, right.astype(np.float32) / 255.0, disp.astype(np.float32))


def fit_factor(disp: np.ndarray, max_disp: float | None) -> int:
    """The smallest power-of-two reduction at which every known disparity lies below ``max_disp``:
    a network of that range then sees the whole scene (the motorcycle itself reaches 59.9 px)."""
    known = disp[np.isfinite(disp) & (disp > 0)]
    factor = 1
    while max_disp is not None and known.size and known.max() / factor >= max_disp:
        factor *= 2
    return factor


def reduce_pair(
    left: np.ndarray, right: np.ndarray, disp: np.ndarray, factor: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pair ``factor`` times smaller: images averaged over factor×factor blocks (no aliasing),
    ground truth sampled at each block's first pixel and divided by ``factor`` (an average across a
    depth edge would invent a disparity no surface has; dropping such blocks would drop the hardest
    pixels). Unknown stays unknown."""
    if factor == 1:
        return left, right, disp
    height, width = (left.shape[0] // factor) * factor, (left.shape[1] // factor) * factor

    def average(image: np.ndarray) -> np.ndarray:
        cut = image[:height, :width]
        return cut.reshape(height // factor, factor, width // factor, factor, -1).mean(axis=(1, 3)).astype(np.float32)

    return average(left), average(right), (disp[:height:factor, :width:factor] / factor).astype(np.float32)


def write_motorcycle(out: str | Path, factor: int = 1) -> Path:
    """Write the pair (``factor`` times smaller, see :func:`reduce_pair`) under ``out`` and return the
    path of its ``pairs`` CSV."""
    return write_pair(out, *reduce_pair(*load_motorcycle(), factor))


def write_pair(out: str | Path, left: np.ndarray, right: np.ndarray, disp: np.ndarray) -> Path:
    """Write one pair with its ground truth as Middlebury names them (im0, im1, disp0) under ``out``,
    with a ``pairs`` CSV listing it; returns the CSV's path."""
    out = Path(out)
    write_image(out / "im0.png", left)
    write_image(out / "im1.png", right)
    write_pfm(out / "disp0.pfm", disp)
    csv = out / "pairs.csv"
    write_text_atomic(csv, "left,right,disp\nim0.png,im1.png,disp0.pfm\n")
    return csv


class MotorcycleStereo:
    """The pair as a one-sample dataset in memory (``dataset: middlebury-motorcycle`` in a config), so
    that an evaluation needs no folder. By default (``reduce: fit``) it is reduced by the smallest
    power of two that brings every known disparity below ``max_disp``, so that every pixel with
    ground truth counts (at max disparity 32, half size: 250×370, disparities up to 30 px);
    ``reduce: 1`` keeps the full pair, where pixels at or beyond ``max_disp`` are not valid."""

    def __init__(self, max_disp: float | None = None, reduce: int | str = "fit") -> None:
        left, right, disp = load_motorcycle()
        if reduce == "fit":
            factor = fit_factor(disp, max_disp)
        elif isinstance(reduce, int) and not isinstance(reduce, bool) and reduce >= 1:
            factor = reduce
        else:
            raise ConfigError(f"{NAME}: 'reduce' must be 'fit' or a positive integer, got {reduce!r}")
        left, right, disp = reduce_pair(left, right, disp, factor)
        meta = {"dataset": NAME, "id": "Motorcycle", "reduced_by": factor}
        self.sample = make_sample(left, right, disp, meta=meta, max_disp=max_disp)

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        if index != 0:
            raise IndexError(index)
        return {**self.sample, "meta": dict(self.sample["meta"])}

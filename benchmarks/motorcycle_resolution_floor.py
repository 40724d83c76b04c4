"""The error floor of a network that estimates disparity at 1/2, 1/4 or 1/8 of the input resolution,
on the quickstart's Motorcycle pair: its own ground truth reduced to that resolution (the mean of the
valid pixels of each cell) and brought back to full size, scored like a prediction.

Usage: ``python benchmarks/motorcycle_resolution_floor.py [--max-disp 32]``. A network whose cost volume
and output live at 1/4 and are only interpolated to full size cannot, even when perfect at 1/4, score
below the 1/4 row; SGBM matches at full resolution.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from stereodistill.data.motorcycle import fit_factor, load_motorcycle, reduce_pair
from stereodistill.data.sample import valid_mask


def reduced_truth(disp: np.ndarray, valid: np.ndarray, factor: int, mode: str = "bilinear") -> np.ndarray:
    """Ground truth as a perfect estimate at 1/``factor`` would give it: each cell's mean over its valid
    pixels, brought back to full size by ``mode`` interpolation."""
    truth = torch.from_numpy(np.where(valid, disp, 0.0)).float()[None, None]
    weight = torch.from_numpy(valid.astype(np.float32))[None, None]
    low = F.avg_pool2d(truth, factor, ceil_mode=True) / F.avg_pool2d(weight, factor, ceil_mode=True).clamp(min=1e-6)
    return F.interpolate(low, size=disp.shape, mode=mode)[0, 0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-disp", type=int, default=32, help="the quickstart's range (sets the pair's size)")
    args = parser.parse_args()
    pair = load_motorcycle()
    disp = np.asarray(reduce_pair(*pair, fit_factor(pair[2], args.max_disp))[2], dtype=np.float32)
    valid = valid_mask(disp, args.max_disp)
    print(f"Motorcycle at {disp.shape[0]}x{disp.shape[1]}, {valid.mean():.1%} of pixels with ground truth")
    print("| resolution | upsampling | EPE | bad-3 |\n|---|---|---|---|")
    for factor in (2, 4, 8):
        for mode in ("bilinear", "nearest"):
            error = np.abs(reduced_truth(disp, valid, factor, mode) - disp)[valid]
            print(f"| 1/{factor} | {mode} | {error.mean():.3f} | {100 * (error > 3).mean():.2f} % |")


if __name__ == "__main__":
    main()

"""Where a network's error on the quickstart's Motorcycle pair lies: at depth edges or away from them,
and per band of true disparity, with the signed bias of each band.

Usage: ``python benchmarks/motorcycle_errors.py MODEL [MODEL ...] [--max-disp 32] [--threads 2]``,
where MODEL is a checkpoint or ``sgbm``. "Edges" are the pixels within 2 px of a step of more than
1.5 px in the ground truth (4-neighbours); every pixel with ground truth below ``--max-disp`` counts,
as in the quickstart's protocol. A band's bias is the mean of prediction − truth over its pixels: a
network that compresses the scene's depth range reads near surfaces too far (negative bias in the top
band) and far ones too near.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy import ndimage

from stereodistill.checkpoint import load_model
from stereodistill.data.motorcycle import fit_factor, load_motorcycle, reduce_pair
from stereodistill.data.sample import valid_mask
from stereodistill.models import build_model


def depth_edges(disp: np.ndarray, valid: np.ndarray, step: float = 1.5, reach: int = 2) -> np.ndarray:
    """Pixels within ``reach`` px of a ground-truth step larger than ``step`` px."""
    known = np.where(valid, disp, 0.0)
    steps = np.zeros_like(valid)
    across = np.abs(np.diff(known, axis=1)) > step
    down = np.abs(np.diff(known, axis=0)) > step
    steps[:, 1:] |= across
    steps[:, :-1] |= across
    steps[1:] |= down
    steps[:-1] |= down
    return ndimage.binary_dilation(steps, iterations=reach)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="checkpoints, or sgbm")
    parser.add_argument("--max-disp", type=int, default=32, help="the quickstart's range (sets the pair's size)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pair = load_motorcycle()
    left, right, disp = reduce_pair(*pair, fit_factor(pair[2], args.max_disp))
    valid = valid_mask(disp, args.max_disp)
    edges = depth_edges(disp, valid)
    band = args.max_disp // 4
    bands = [(lo, lo + band) for lo in range(0, args.max_disp, band)]
    # 8-bit, as the quickstart writes the pair and `stereodistill eval` reads it: the same EPE to the digit.
    views = [
        torch.from_numpy(np.floor(v * 255 + 0.5).clip(0, 255) / 255).float().permute(2, 0, 1)[None]
        for v in (left, right)
    ]
    share = [f"{100 * (valid & (disp >= lo) & (disp < hi)).sum() / valid.sum():.0f} %" for lo, hi in bands]
    print(f"Motorcycle at {disp.shape[0]}x{disp.shape[1]}; edges: {100 * edges[valid].mean():.0f} % of the pixels")
    print(
        "| model | EPE | at edges | elsewhere | "
        + " | ".join(f"{lo}–{hi} px ({s}): EPE, bias" for (lo, hi), s in zip(bands, share, strict=True))
        + " |"
    )
    print("|---" * (4 + len(bands)) + "|")
    for name in args.models:
        model = build_model("sgbm", max_disp=args.max_disp) if name == "sgbm" else load_model(name)
        with torch.no_grad():
            predicted = model.eval()(*views).disparity[0].numpy()
        signed = predicted - disp
        error = np.abs(signed)
        cells = [error[valid].mean(), error[valid & edges].mean(), error[valid & ~edges].mean()]
        row = [f"{v:.3f}" for v in cells]
        for lo, hi in bands:
            inside = valid & (disp >= lo) & (disp < hi)
            row.append(f"{error[inside].mean():.3f}, {signed[inside].mean():+.2f}")
        print(f"| {name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

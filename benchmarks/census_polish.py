"""How much of a network's gap to SGBM a classical full-resolution polish closes: a measurement, not a
feature of the package.

Each network's disparity is moved to the best census match within ``--radius`` px of it: the census
transform (``--window``) of both grey views, their agreement at every integer disparity at full
resolution, averaged over a ``--box`` × ``--box`` window, searched only between the estimate's
rounded value ± radius, with a parabola through the best match and its neighbours for the sub-pixel
part. A pixel keeps the network's value where the best match lies on the border of its search (no
interior optimum). The network decides which surface a pixel belongs to; the classical matcher only
places it. If the networks lost to SGBM only in sub-pixel placement at full resolution, this would
close the gap; what it leaves is what the network gets wrong about the scene.

Usage: ``python benchmarks/census_polish.py MODEL [MODEL ...] [--synthetic ROOT] [--max-disp 32]
[--radius 3 8] [--window 5] [--box 9] [--threads 2]``, MODEL a checkpoint or ``sgbm``; the pairs and
regions ("edges": within 2 px of a ground-truth step over 1.5 px) are those of
``benchmarks/error_regions.py``. Also ``gt@1/4``: the ground truth averaged over 4×4 cells and
interpolated back, a perfect 1/4-resolution estimate.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from error_regions import cases, predict, regions, tally
from motorcycle_resolution_floor import reduced_truth
from stereodistill.checkpoint import load_model
from stereodistill.models import build_model
from stereodistill.models.block_match import polish
from stereodistill.models.census_cost import census_bits
from stereodistill.models.cost_volume import groupwise_correlation_volume


def census_similarity(left: torch.Tensor, right: torch.Tensor, max_disp: int, window: int, box: int) -> torch.Tensor:
    """1×D×H×W share of agreeing census bits (1: all agree, −1: none; −1 where the match leaves the
    right view), box-averaged over ``box`` × ``box`` pixels at each disparity."""
    grey = [view.mean(1, keepdim=True) for view in (left, right)]
    signs = [2 * census_bits(view, window) - 1 for view in grey]
    volume = groupwise_correlation_volume(signs[0], signs[1], max_disp, 1)[:, 0]
    width = left.shape[-1]
    inside = torch.arange(width).view(1, 1, 1, -1) >= torch.arange(max_disp).view(1, -1, 1, 1)
    volume = torch.where(inside, volume, torch.full_like(volume, -1.0))
    return F.avg_pool2d(volume, box, 1, box // 2, count_include_pad=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="checkpoints, or sgbm")
    parser.add_argument("--synthetic", metavar="ROOT", help="a synthetic dataset's folder (its test split)")
    parser.add_argument("--max-disp", type=int, default=32, help="the quickstart's range (sets Motorcycle's size)")
    parser.add_argument("--radius", type=int, nargs="+", default=[3, 8], help="search radii in px")
    parser.add_argument("--window", type=int, default=5, help="census window (odd)")
    parser.add_argument("--box", type=int, default=9, help="box over which the census agreement is averaged (odd)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.readout = None
    torch.set_num_threads(args.threads)
    pairs = list(cases(args))
    masks = [regions(disp, valid, [(0, args.max_disp)]) for _, _, disp, valid in pairs]
    similarity = [census_similarity(left, right, args.max_disp, args.window, args.box) for left, right, *_ in pairs]
    where = args.synthetic or "Motorcycle"
    print(f"{where}: {len(pairs)} pair(s); census {args.window}×{args.window}, box {args.box}×{args.box}")
    header = ["model", "raw: EPE, bad-3, edges, elsewhere"] + [f"polished ±{r} px" for r in args.radius]
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for name in ["gt@1/4", *args.models]:
        if name == "gt@1/4":
            raw = [reduced_truth(disp, valid, 4) for *_, disp, valid in pairs]
        else:
            model = build_model("sgbm", max_disp=args.max_disp) if name == "sgbm" else load_model(name).eval()
            raw = [predict(model, left, right, None) for left, right, *_ in pairs]
        cells = []
        for radius in [None, *args.radius]:
            outputs = raw
            if radius is not None:
                outputs = [
                    polish(torch.from_numpy(d)[None].float(), -s, radius)[0].numpy()  # a cost: less is better
                    for d, s in zip(raw, similarity, strict=True)
                ]
            errors = [out - disp for out, (*_, disp, _) in zip(outputs, pairs, strict=True)]
            result = tally(errors, masks)
            valid = [m["all"] for m in masks]
            bad3 = sum(int((np.abs(e)[v] > 3).sum()) for e, v in zip(errors, valid, strict=True)) / sum(
                int(v.sum()) for v in valid
            )
            cells.append(
                f"{result.epe('all'):.3f}, {100 * bad3:.2f} %, {result.epe('edges'):.2f}, {result.epe('elsewhere'):.2f}"
            )
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

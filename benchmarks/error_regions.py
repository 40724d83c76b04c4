"""Where a network's error lies: at depth edges or away from them, in occluded pixels, per band of
true disparity with the signed bias of each band, and, for the top band, by distance to an edge.

Usage: ``python benchmarks/error_regions.py MODEL [MODEL ...] [--synthetic ROOT] [--max-disp 32]
[--readout mode:W] [--stages] [--threads 2]``, where MODEL is a checkpoint or ``sgbm``. The pairs are the
quickstart's Motorcycle pair, or with ``--synthetic`` the test split of a synthetic dataset written by
``stereodistill data synth`` (e.g. a quickstart's ``data/synthetic``). Every pixel with ground truth
below ``--max-disp`` counts, as in the quickstart's protocol.

- "Edges": within 2 px of a step of more than 1.5 px in the ground truth (4-neighbours).
- "Occluded": the pixel's match lies outside the right view, or behind a nearer surface there (the
  ground truth forward-warped to the right view, nearest pixel, a 1 px margin).
- A band's bias is the mean of prediction − truth over its pixels: a network that compresses the
  scene's depth range reads near surfaces too far (negative bias in the top band).
- "By size": the EPE split into what the pixels off by more than 3 px, by 1–3 px and by at most 1 px
  contribute (the three add up to the EPE), and the median error: gross mismatches against placement.
- ``--stages``: for a network that ends in a fine refinement (``fine: R``), two more rows: the stage's
  input (the network's own estimate) and, with ``fine_block``, the block-matching hypothesis alone.
  Which of them is right where the output is wrong tells whether the stage lacked a hypothesis or
  did not pick it.
- ``--readout mode:W`` replaces each network's soft-argmin by the expectation of its ``prob`` tap
  within W px of the most likely disparity: whether a bias comes from averaging over a spread-out
  distribution (it shrinks) or from the matching itself (it stays).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from scipy import ndimage

from stereodistill.checkpoint import load_model
from stereodistill.config import from_dict
from stereodistill.data.motorcycle import fit_factor, load_motorcycle, reduce_pair
from stereodistill.data.sample import valid_mask
from stereodistill.data.transforms import padding_for
from stereodistill.models import build_model
from stereodistill.models.block_match import block_match
from stereodistill.models.fine_refine import matching_maps
from stereodistill.train.config import DatasetConfig
from stereodistill.train.data import build as build_dataset

EDGE_DISTANCES = ((0, 3), (3, 8), (8, 16), (16, None))


def depth_steps(disp: np.ndarray, valid: np.ndarray, step: float = 1.5) -> np.ndarray:
    """Pixels beside a ground-truth step larger than ``step`` px (4-neighbours)."""
    known = np.where(valid, disp, 0.0)
    steps = np.zeros_like(valid)
    across = np.abs(np.diff(known, axis=1)) > step
    down = np.abs(np.diff(known, axis=0)) > step
    steps[:, 1:] |= across
    steps[:, :-1] |= across
    steps[1:] |= down
    steps[:-1] |= down
    return steps


def occluded(disp: np.ndarray, valid: np.ndarray, margin: float = 1.0) -> np.ndarray:
    """Left pixels not seen in the right view: ``x − d < 0``, or a nearer pixel lands on the same
    right-view pixel (a z-buffer of the forward-warped ground truth)."""
    height, width = disp.shape
    ys, xs = np.indices((height, width))
    target = np.rint(xs - np.where(valid, disp, 0.0)).astype(np.int64)
    inside = valid & (target >= 0) & (target < width)
    nearest = np.full((height, width), -np.inf)
    np.maximum.at(nearest, (ys[inside], target[inside]), disp[inside])
    covered = np.zeros_like(valid)
    covered[inside] = nearest[ys[inside], target[inside]] > disp[inside] + margin
    return valid & ((target < 0) | covered)


def cases(args: argparse.Namespace) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]]:
    """(left, right, disparity, valid) of each pair: 1×3×H×W views, H×W arrays."""
    if args.synthetic is None:
        pair = load_motorcycle()
        left, right, disp = reduce_pair(*pair, fit_factor(pair[2], args.max_disp))
        # 8-bit, as the quickstart writes the pair and `stereodistill eval` reads it: the same EPE to the digit.
        views = [
            torch.from_numpy(np.floor(v * 255 + 0.5).clip(0, 255) / 255).float().permute(2, 0, 1)[None]
            for v in (left, right)
        ]
        yield views[0], views[1], disp, valid_mask(disp, args.max_disp)
        return
    spec = {"dataset": "sceneflow", "root": args.synthetic, "split": "test", "max_disp": args.max_disp}
    dataset = build_dataset(from_dict(DatasetConfig, spec))
    for index in range(len(dataset)):
        sample = dataset[index]
        views = [torch.as_tensor(sample[k]).float()[None] for k in ("left", "right")]
        yield views[0], views[1], np.asarray(sample["disp"]).squeeze(), np.asarray(sample["valid"]).squeeze()


def predict(model: torch.nn.Module, left: torch.Tensor, right: torch.Tensor, readout: int | None) -> np.ndarray:
    """The model's disparity, or (``readout``) the expectation of its ``prob`` tap near the mode."""
    with torch.no_grad():
        if readout is None or model.arch == "sgbm":
            return model(left, right).disparity[0].numpy()
        prob = model(left, right, taps=["prob"]).taps["prob"]
    levels = torch.arange(prob.shape[1], dtype=prob.dtype).view(1, -1, 1, 1)
    near_mode = prob * ((levels - prob.argmax(1, keepdim=True)).abs() <= readout)
    return ((near_mode * levels).sum(1) / near_mode.sum(1).clamp_min(1e-12))[0].numpy()


@contextmanager
def stage_inputs(model: torch.nn.Module, enabled: bool = True) -> Iterator[list[dict[str, torch.Tensor]]]:
    """While open, each forward pass of ``model``'s fine refinement adds what it started from to the
    list: ``estimate`` (its input, the network's own output) and, with a block match, ``block match``
    (that hypothesis alone), at the padded size. Nothing for a network without the stage."""
    seen: list[dict[str, torch.Tensor]] = []
    fine = getattr(model, "fine", None)
    if not enabled or fine is None:
        yield seen
        return

    def keep(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        estimate, padded_left, padded_right = inputs
        found = {"estimate": estimate}
        if fine.block:
            found["block match"] = block_match(fine.block_costs(matching_maps(padded_left, padded_right)))
        seen.append(found)

    handle = fine.register_forward_hook(keep)
    try:
        yield seen
    finally:
        handle.remove()


#: The sizes of error the EPE is split by: (label, lowest, highest) in px, lowest excluded.
ERROR_SIZES = (("> 3 px", 3.0, np.inf), ("1–3 px", 1.0, 3.0), ("≤ 1 px", -1.0, 1.0))


def by_size(errors: list[np.ndarray], masks: list[dict[str, np.ndarray]]) -> list[str]:
    """Cells: each size's contribution to the EPE over every valid pixel, then the median |error|."""
    error = np.abs(np.concatenate([e[m["all"]] for e, m in zip(errors, masks, strict=True)]))
    cells = [f"{error[(error > lo) & (error <= hi)].sum() / error.size:.3f}" for _, lo, hi in ERROR_SIZES]
    return [*cells, f"{np.median(error):.3f}"]


class Tally:
    """Sums of |error|, error and pixel counts per named region, over all pairs."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, name: str, error: np.ndarray, mask: np.ndarray) -> None:
        entry = self.sums.setdefault(name, [0.0, 0.0, 0.0])
        entry[0] += float(np.abs(error[mask]).sum())
        entry[1] += float(error[mask].sum())
        entry[2] += float(mask.sum())

    def epe(self, name: str) -> float:
        total, _, count = self.sums[name]
        return total / count if count else float("nan")

    def bias(self, name: str) -> float:
        _, signed, count = self.sums[name]
        return signed / count if count else float("nan")

    def share(self, name: str, of: str) -> str:
        return f"{100 * self.sums[name][2] / self.sums[of][2]:.0f} %"


def tally(errors: list[np.ndarray], regions: list[dict[str, np.ndarray]]) -> Tally:
    result = Tally()
    for error, masks in zip(errors, regions, strict=True):
        for name, mask in masks.items():
            result.add(name, error, mask)
    return result


def regions(disp: np.ndarray, valid: np.ndarray, bands: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The named pixel sets of one pair."""
    steps = depth_steps(disp, valid)
    edges = ndimage.binary_dilation(steps, iterations=2)
    distance = ndimage.distance_transform_edt(~steps)
    hidden = occluded(disp, valid)
    masks = {"all": valid, "edges": valid & edges, "elsewhere": valid & ~edges, "occluded": hidden}
    for lo, hi in bands:
        masks[f"band {lo}"] = valid & (disp >= lo) & (disp < hi)
    top = valid & ~hidden & (disp >= bands[-1][0])
    masks["top, visible"] = top
    for lo, hi in EDGE_DISTANCES:
        masks[f"top {lo}"] = top & (distance >= lo) & (distance < (hi if hi is not None else np.inf))
    return masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="checkpoints, or sgbm")
    parser.add_argument("--synthetic", metavar="ROOT", help="a synthetic dataset's folder (its test split)")
    parser.add_argument("--max-disp", type=int, default=32, help="the quickstart's range (sets Motorcycle's size)")
    parser.add_argument("--readout", metavar="mode:W", help="expectation within W px of the mode (networks)")
    parser.add_argument("--stages", action="store_true", help="also the fine stage's input and block match")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    readout = int(args.readout.removeprefix("mode:")) if args.readout else None
    torch.set_num_threads(args.threads)
    band = args.max_disp // 4
    bands = [(lo, lo + band) for lo in range(0, args.max_disp, band)]
    pairs = list(cases(args))
    masks = [regions(disp, valid, bands) for _, _, disp, valid in pairs]
    where = args.synthetic or "Motorcycle"
    first = tally([np.zeros_like(disp) for *_, disp, _ in pairs], masks)
    print(
        f"{where}: {len(pairs)} pair(s); edges {first.share('edges', 'all')}, occluded "
        f"{first.share('occluded', 'all')} of the pixels"
    )
    header = ["model", "EPE", f"at edges ({first.share('edges', 'all')})", "elsewhere", "occluded"]
    header += [f"{lo}–{hi} px ({first.share(f'band {lo}', 'all')}): EPE, bias" for lo, hi in bands]
    near = [
        (f"{lo}–{hi} px" if hi else f"≥ {lo} px") + f" ({first.share(f'top {lo}', 'top, visible')})"
        for lo, hi in EDGE_DISTANCES
    ]
    rows, near_rows, size_rows, worst_notes = [], [], [], []
    runs = []  # (row name, errors per pair)
    for name in args.models:
        model = build_model("sgbm", max_disp=args.max_disp) if name == "sgbm" else load_model(name).eval()
        with stage_inputs(model, args.stages) as seen:  # read during the same forward passes
            runs.append((name, [predict(model, left, right, readout) - disp for left, right, disp, _ in pairs]))
        for part in seen[0] if seen else ():
            errors = []
            for found, (left, _, disp, _) in zip(seen, pairs, strict=True):
                padding = padding_for(*left.shape[-2:], model.pad_multiple)
                errors.append(padding.crop(found[part])[0].numpy() - disp)
            runs.append((f"{name} · {part}", errors))
    for name, errors in runs:
        result = tally(errors, masks)
        cells = [f"{result.epe(k):.3f}" for k in ("all", "edges", "elsewhere", "occluded")]
        cells += [f"{result.epe(f'band {lo}'):.3f}, {result.bias(f'band {lo}'):+.2f}" for lo, _ in bands]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
        size_rows.append(f"| {name} | {result.epe('all'):.3f} | " + " | ".join(by_size(errors, masks)) + " |")
        near_cells = [f"{result.epe(f'top {lo}'):.2f}, {result.bias(f'top {lo}'):+.2f}" for lo, _ in EDGE_DISTANCES]
        near_rows.append(f"| {name} | " + " | ".join(near_cells) + " |")
        inner = f"top {EDGE_DISTANCES[-1][0]}"
        per_pair = [tally([e], [m]) for e, m in zip(errors, masks, strict=True)]
        worst = max(range(len(pairs)), key=lambda i: per_pair[i].sums[inner][0])
        total = result.sums[inner][0]
        if total > 0:
            share = 100 * per_pair[worst].sums[inner][0] / total
            worst_notes.append(
                f"{name}: pair {worst} holds {share:.0f} % of it (bias {per_pair[worst].bias(inner):+.2f} px over "
                f"{per_pair[worst].sums[inner][2]:.0f} px)"
            )
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    print("\n".join(rows))
    sizes = ["model", "EPE", *(f"from errors {label}" for label, *_ in ERROR_SIZES), "median error"]
    print("\nThe EPE by size of the error (the three parts add up to it)")
    print("| " + " | ".join(sizes) + " |\n" + "|---" * len(sizes) + "|")
    print("\n".join(size_rows))
    print(f"\nTop band ({bands[-1][0]}–{args.max_disp} px), visible pixels, by distance to an edge: EPE, bias")
    print("| model | " + " | ".join(near) + " |\n" + "|---" * (1 + len(near)) + "|")
    print("\n".join(near_rows))
    if len(pairs) > 1:
        print(f"\nThe pair with the most |error| at ≥ {EDGE_DISTANCES[-1][0]} px from an edge in the top band:")
        print("\n".join(worst_notes))


if __name__ == "__main__":
    main()

"""``stereodistill infer``: disparity for your own image pairs, as PFM, KITTI 16-bit PNG and colour PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from stereodistill.cli.args import add_device
from stereodistill.data.formats import IMAGE_SUFFIXES
from stereodistill.errors import DataError, InputError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "infer",
        help="predict disparity for image pairs (files or two folders)",
        description="Predict the left-view disparity of LEFT/RIGHT (two images, or two folders whose images pair "
        "up by name). Any size: the model pads and crops back exactly. Writes NAME.pfm, NAME_disp16.png "
        "(KITTI style, disparity x 256) and NAME_color.png for each pair.",
    )
    parser.add_argument("checkpoint", help="a stereodistill checkpoint")
    parser.add_argument("left", help="left image, or a folder of left images")
    parser.add_argument("right", help="right image, or a folder of right images")
    parser.add_argument("--out", default="infer_out", help="output folder (default infer_out)")
    add_device(parser)
    parser.set_defaults(handler=run)


def pairs_from(left: Path, right: Path) -> list[tuple[Path, Path]]:
    """Two files, or two folders whose image files pair up by name (every left needs its right)."""
    if left.is_dir() != right.is_dir():
        raise InputError(f"{left} and {right}: give two image files or two folders, not one of each")
    if not left.is_dir():
        return [(left, right)]
    lefts = sorted(p for p in left.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not lefts:
        raise DataError(left, "no images in this folder")
    missing = [p.name for p in lefts if not (right / p.name).is_file()]
    if missing:
        raise DataError(right, f"no right image for {', '.join(missing[:5])}" + (" …" if len(missing) > 5 else ""))
    return [(p, right / p.name) for p in lefts]


def as_batch(image, device):
    """H×W×3 NumPy image → 1×3×H×W tensor on ``device``."""
    import torch

    return torch.from_numpy(image.transpose(2, 0, 1).copy())[None].to(device)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from stereodistill.checkpoint import load_model
    from stereodistill.data.formats import read_image, write_image, write_pfm, write_png_disparity
    from stereodistill.report.colormap import colorize
    from stereodistill.runtime import resolve_device

    device = resolve_device(args.device)
    model = load_model(args.checkpoint, map_location=device)
    pairs = pairs_from(Path(args.left), Path(args.right))
    images = []
    for left_path, right_path in pairs:  # read and check everything before writing anything
        left, right = read_image(left_path), read_image(right_path)
        if left.shape != right.shape:
            raise InputError(
                f"{left_path} is {left.shape[1]}x{left.shape[0]} but {right_path} is {right.shape[1]}x{right.shape[0]}"
            )
        images.append((left_path, left, right))
    out = Path(args.out)
    for left_path, left, right in images:
        with torch.no_grad():
            disparity = model(as_batch(left, device), as_batch(right, device)).disparity[0].float().cpu().numpy()
        stem = left_path.stem
        write_pfm(out / f"{stem}.pfm", disparity)
        write_png_disparity(out / f"{stem}_disp16.png", np.clip(disparity, 0, 65535 / 256))
        write_image(out / f"{stem}_color.png", colorize(disparity, vmax=float(model.max_disp)))
        print(
            f"{left_path.name}: {disparity.shape[1]}x{disparity.shape[0]}, disparity "
            f"{disparity.min():.1f}..{disparity.max():.1f} px -> {out / stem}.pfm, _disp16.png, _color.png"
        )
    return 0

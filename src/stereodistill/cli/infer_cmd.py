"""``stereodistill infer``: disparity for your own image pairs, as PFM, KITTI 16-bit PNG and colour PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stereodistill.cli.args import add_device, max_disp
from stereodistill.errors import InputError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "infer",
        help="predict disparity for image pairs (files, two folders, or two glob patterns)",
        description="Predict the left-view disparity of LEFT/RIGHT: two images, two folders whose images pair up "
        "by name, or two quoted glob patterns (e.g. 'mb/*/im0.png' 'mb/*/im1.png': outputs named by scene). Any "
        "size: the model pads and crops back exactly. Pairs are read, predicted and written one at a time; a pair "
        "whose outputs exist is skipped (rerun to resume). Writes NAME.pfm, NAME_disp16.png (KITTI style, "
        "disparity x 256; 256 px and more, which it cannot hold, as 0) and NAME_color.png (with a colour bar) "
        "for each pair.",
    )
    parser.add_argument("checkpoint", help="a stereodistill checkpoint, or sgbm (the classical baseline)")
    parser.add_argument("left", help="left image, a folder of left images, or a quoted glob pattern")
    parser.add_argument(
        "right",
        nargs="?",
        help="right image, a folder of right images, or a quoted glob pattern; for a stereo video, the right "
        "video (or none, with --side-by-side)",
    )
    parser.add_argument(
        "--side-by-side", action="store_true", help="LEFT is one video whose frames hold the left view on the left half"
    )
    parser.add_argument("--out", default="infer_out", help="output folder (default infer_out)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="resize the images by this factor before the network (e.g. 0.5 when disparities exceed its range); "
        "disparities are scaled back to the input's pixels (default 1)",
    )
    parser.add_argument("--overwrite", action="store_true", help="predict pairs whose outputs already exist too")
    parser.add_argument(
        "--max-disp",
        type=max_disp,
        help="search range of a classical method (sgbm; default 192); a checkpoint has its own range",
    )
    add_device(parser)
    parser.set_defaults(handler=run)


OUTPUT_SUFFIXES = (".pfm", "_disp16.png", "_color.png")


def as_batch(image, device):
    """H×W×3 NumPy image → 1×3×H×W tensor on ``device``."""
    import torch

    return torch.from_numpy(image.transpose(2, 0, 1).copy())[None].to(device)


#: The smallest side a view may have when it reaches the network: networks estimate at 1/4 (or
#: 1/8), so below this a view holds a handful of cells and the "disparity" is noise.
MIN_SIDE = 16


def predict(model, left, right, scale: float, device, where: str = "input"):
    """Disparity (H×W NumPy, in the input's pixels) of one pair, the images resized by ``scale`` first.
    A view too small to match, or an answer that is not finite, is an error naming ``where``."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    left_t, right_t = as_batch(left, device), as_batch(right, device)
    height, width = left_t.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if min(size) < MIN_SIDE:
        if scale != 1.0:
            made, hint = f"--scale {scale:g} makes its views {size[0]}x{size[1]} px", "; give a larger --scale"
        else:
            made, hint = f"its views are {height}x{width} px", ""
        raise InputError(f"{where}: {made}, too small to match (at least {MIN_SIDE} px a side){hint}")
    if scale != 1.0:
        left_t, right_t = (F.interpolate(t, size=size, mode="bilinear", antialias=True) for t in (left_t, right_t))
    with torch.no_grad():
        disparity = model(left_t, right_t).disparity[:, None].float()
    if scale != 1.0:
        factor = width / disparity.shape[-1]
        disparity = F.interpolate(disparity, size=(height, width), mode="bilinear", align_corners=False) * factor
    result = disparity[0, 0].cpu().numpy()
    broken = int((~np.isfinite(result)).sum())
    if broken:  # written out, it would read as a map (NaN in the PFM, 0 in the PNG)
        raise InputError(
            f"{where}: the network's disparity is not finite (NaN or infinite) at {broken:,} of {result.size:,} "
            "pixels: its weights or this input are broken; nothing was written for it"
        )
    return result


#: What made each output of a folder: a rerun skips an output only when this pair, network and scale did.
RECORD = "infer.json"


def network_stamp(name: str, model) -> str:
    """The network's identity: a checkpoint's weights file (path, size, time), or a classical method's range."""
    from stereodistill.checkpoint import checkpoint_paths, classical_network
    from stereodistill.fileio import file_stamp

    if classical_network(name):
        return f"{name} (max disparity {model.max_disp})"
    return file_stamp(checkpoint_paths(name)[0])


#: What each key of a record names, for the message when an output was made from something else.
SOURCE_WORDS = {
    "left": "left view",
    "right": "right view",
    "left_file": "left view's contents",
    "right_file": "right view's contents",
    "network": "network",
    "scale": "scale",
}


def source(left: Path, right: Path | None, network: str, scale: float) -> dict[str, str | float | None]:
    """What made an output: its inputs (a side-by-side video has no right file) with their stamps (a
    file replaced under the same name is another input), network and scale."""
    from stereodistill.fileio import file_stamp

    return {
        "left": str(left.resolve()),
        "right": str(right.resolve()) if right is not None else None,
        "left_file": file_stamp(left),
        "right_file": file_stamp(right) if right is not None else None,
        "network": network,
        "scale": scale,
    }


def check_source(record: dict, name: str, wanted: dict, output: Path) -> None:
    """An existing output is this input's, or unknown (made before records were kept); else an error.
    A record made before inputs were stamped is checked on what it holds."""
    made = record.get(name)
    if made is not None and not isinstance(made, dict):
        raise InputError(f"{output}: its entry in {RECORD} is damaged ({made!r}): --overwrite to replace it")
    changed = [key for key in wanted if made is not None and key in made and made[key] != wanted[key]]
    # another file has other contents anyway: its stamp is news only for the same path
    changed = [key for key in changed if not key.endswith("_file") or key.removesuffix("_file") not in changed]
    if changed:
        first = changed[0]
        if first.endswith("_file"):  # its stamp (path, size, time) says no more than this
            detail = f"{wanted[first.removesuffix('_file')]} was rewritten since"
        else:
            detail = f"{first}: {made[first]} then, {wanted[first]} now"
        raise InputError(
            f"{output} was made from another {', '.join(SOURCE_WORDS.get(k, k) for k in changed)} ({detail}): "
            "--overwrite to replace it, or another --out"
        )


def read_record(out: Path, overwrite: bool) -> dict:
    from stereodistill.fileio import read_record as read

    path = out / RECORD
    return (
        read(path, "--overwrite to replace it and the outputs it records") if path.is_file() and not overwrite else {}
    )


def write_record(out: Path, record: dict) -> None:
    from stereodistill.fileio import write_text_atomic

    write_text_atomic(out / RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")


def check_sizes(pairs) -> None:
    """Every pair's two images agree in size (read from their headers, before any work)."""
    from stereodistill.data.formats import image_size

    for pair in pairs:
        left, right = image_size(pair.left, view=True), image_size(pair.right, view=True)
        if left != right:
            raise InputError(f"{pair.left} is {left[0]}x{left[1]} (HxW) but {pair.right} is {right[0]}x{right[1]}")


def write_disp16(path: Path, disparity) -> int:
    """Write ``NAME_disp16.png`` (KITTI's ×256), with the disparities it cannot hold (256 px and more)
    as 0, "no data", not clipped to a value that reads back as a measurement; returns how many."""
    import numpy as np

    from stereodistill.data.formats import beyond_png_range, write_png_disparity

    beyond = beyond_png_range(disparity)
    write_png_disparity(path, np.where(beyond, 0, disparity))
    return int(beyond.sum())


def beyond_warning(png: Path, pixels: int, pfm: Path | None) -> str:
    """The warning for disparities a KITTI 16-bit PNG cannot hold, written there as 0 ("no data")."""
    kept = f"; {pfm} holds them" if pfm is not None else ""
    return (
        f"warning: {png}: {pixels} pixels have a disparity of 256 px or more, beyond what a 16-bit PNG "
        f"holds at x256; written as 0 (no data) there{kept}"
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from stereodistill.checkpoint import classical_network, load_network
    from stereodistill.data.formats import read_image, write_image, write_pfm
    from stereodistill.data.pairing import find_pairs
    from stereodistill.data.video import is_video
    from stereodistill.fileio import check_writable
    from stereodistill.report.colormap import colorize, with_colorbar
    from stereodistill.runtime import resolve_device

    if not (0 < args.scale <= 4):
        raise InputError(f"--scale must be in (0, 4], got {args.scale:g}")
    if is_video(args.left):
        if (args.right is None) != args.side_by_side:
            raise InputError("a stereo video is two files (LEFT RIGHT) or one side-by-side file (LEFT --side-by-side)")
    elif args.right is None or args.side_by_side:
        raise InputError("give LEFT and RIGHT (--side-by-side is for a video)")
    if args.max_disp is not None and not classical_network(args.checkpoint):
        raise InputError(f"--max-disp is the range of a classical method; {args.checkpoint} has its own")
    if not Path(args.out).is_dir():  # a file or a broken link in its place, or no folder to make it in: before any work
        check_writable(Path(args.out) / RECORD)
    device = resolve_device(args.device)
    model = load_network(args.checkpoint, map_location=device, max_disp=args.max_disp)
    if is_video(args.left):
        return run_video(args, model, device)
    pairs = find_pairs(args.left, args.right)
    check_sizes(pairs)
    out = Path(args.out)
    scanned = not Path(args.left).is_file()  # folders and patterns: a rerun would read the outputs as inputs
    if scanned and any(out.resolve() == view.parent.resolve() for pair in pairs for view in (pair.left, pair.right)):
        raise InputError(f"--out {out}: is a folder of input images; the outputs would become inputs, give another")
    record = read_record(out, args.overwrite)
    network = network_stamp(args.checkpoint, model)
    todo = []
    for pair in pairs:
        if args.overwrite or not all((out / f"{pair.name}{s}").is_file() for s in OUTPUT_SUFFIXES):
            todo.append(pair)
        else:  # not this pair's, this network's or this scale's output: never taken for it
            wanted = source(pair.left, pair.right, network, args.scale)
            check_source(record, pair.name, wanted, out / f"{pair.name}.pfm")
    if len(todo) < len(pairs):
        print(f"skipping {len(pairs) - len(todo)} of {len(pairs)} pairs whose outputs exist (--overwrite to redo)")
    vmax = float(model.max_disp) / args.scale  # the colour range: what the network can see, in input pixels
    for index, pair in enumerate(todo, 1):
        left, right = read_image(pair.left), read_image(pair.right)
        if left.shape != right.shape:  # the headers agreed; the decoded images must too
            raise InputError(f"{pair.left} and {pair.right} differ in size")
        disparity = predict(model, left, right, args.scale, device, where=str(pair.left))
        write_pfm(out / f"{pair.name}.pfm", disparity)
        beyond = write_disp16(out / f"{pair.name}_disp16.png", disparity)
        write_image(out / f"{pair.name}_color.png", with_colorbar(colorize(disparity, vmax=vmax), vmax))
        record[pair.name] = source(pair.left, pair.right, network, args.scale)
        write_record(out, record)
        print(
            f"[{index}/{len(todo)}] {pair.name}: {disparity.shape[0]}x{disparity.shape[1]}, disparity "
            f"{disparity.min():.1f}..{disparity.max():.1f} px (colour 0..{vmax:g} px) -> "
            f"{out / pair.name}.pfm, _disp16.png, _color.png",
            flush=True,
        )
        if beyond:
            print(beyond_warning(out / f"{pair.name}_disp16.png", beyond, out / f"{pair.name}.pfm"), file=sys.stderr)
    if not todo:
        print("nothing to do", file=sys.stderr)
    return 0


def run_video(args: argparse.Namespace, model, device) -> int:
    """A stereo video, one frame at a time: ``NAME_disparity.mp4`` (colour, with a colour bar) and
    ``NAME_frames/NNNNNN_disp16.png`` (KITTI style, x256) beside it; skipped when the video exists."""
    import sys

    from stereodistill.data.video import stereo_frames, video_writer
    from stereodistill.report.colormap import colorize, with_colorbar
    from stereodistill.train.logging import ProgressClock

    out = Path(args.out)
    name = Path(args.left).stem
    target = out / f"{name}_disparity.mp4"
    record = read_record(out, args.overwrite)
    right = Path(args.right) if args.right is not None else None
    wanted = source(Path(args.left), right, network_stamp(args.checkpoint, model), args.scale)
    if target.is_file() and not args.overwrite:
        check_source(record, target.name, wanted, target)
        print(f"{target} exists: nothing to do (--overwrite to redo)")
        return 0
    stream = stereo_frames(args.left, args.right)
    fps = stream.fps
    vmax = float(model.max_disp) / args.scale
    count, cut, clock = 0, 0, ProgressClock()
    with video_writer(target, fps) as video:
        for left, right in stream.pairs:
            disparity = predict(model, left, right, args.scale, device, where=f"{args.left}, frame {count + 1}")
            cut += write_disp16(out / f"{name}_frames" / f"{count:06d}_disp16.png", disparity)
            video.append(with_colorbar(colorize(disparity, vmax=vmax), vmax))
            count += 1
            if sys.stderr.isatty() or clock.due():
                print(f"  frame {count}", file=sys.stderr, flush=True)
    if not count:
        raise InputError(f"{args.left}: the video has no frames")
    warnings = stream.warnings(count)
    if cut:
        warnings.append(beyond_warning(out / f"{name}_frames", cut, None))
    for warning in warnings:
        print(warning, file=sys.stderr)
    for stale in (out / f"{name}_frames").glob("*_disp16.png"):  # a longer video's, redone with --overwrite
        if stale.name[:6].isdigit() and int(stale.name[:6]) >= count:
            stale.unlink()
    record[target.name] = wanted
    write_record(out, record)
    print(f"{count} frames ({fps:g} fps, colour 0..{vmax:g} px) -> {target} and {out / (name + '_frames')}/")
    return 0

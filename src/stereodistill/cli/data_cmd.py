"""``stereodistill data``: make the embedded synthetic dataset and check any dataset on disk."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from stereodistill.cli.args import check_output, dataset_files, max_disp, positive_int, size
from stereodistill.errors import ConfigError
from stereodistill.fileio import write_json


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="generate synthetic data, check datasets")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = sub.add_parser(
        "synth",
        help="write procedural stereo pairs in the SceneFlow layout",
        description="Write procedural stereo pairs with exact ground truth (PNG + PFM, SceneFlow layout).",
    )
    synth.add_argument("--out", required=True, help="output folder (created)")
    synth.add_argument("--pairs", type=positive_int, default=100, help="pairs in the split (default 100)")
    synth.add_argument("--size", type=size, default=(256, 512), help="HxW (default 256x512)")
    synth.add_argument("--max-disp", type=max_disp, default=64, help="disparities stay below this (default 64)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--split", choices=("train", "test"), default="train", help="TRAIN or TEST folder")
    synth.set_defaults(handler=run_synth)

    pairs = sub.add_parser(
        "pairs",
        help="list a folder of stereo pairs as a pairs CSV",
        description="Match LEFT_DIR and RIGHT_DIR by file name (or LEFT_DIR/left and LEFT_DIR/right when RIGHT_DIR "
        "is not given) and write the CSV the 'pairs' dataset reads, paths relative to it. Ground truth "
        "(--disp DIR, matched by stem: .pfm, .png or .npy) stays optional. Every file is read whole, so a "
        "truncated or corrupt one is named now, not when a run reaches it.",
    )
    pairs.add_argument("left_dir", help="folder of left images (or a folder holding left/ and right/)")
    pairs.add_argument("right_dir", nargs="?", help="folder of right images")
    pairs.add_argument("--disp", help="folder of ground-truth disparities, matched by stem")
    pairs.add_argument("--out", required=True, help="the CSV to write")
    pairs.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out, and list, images without their other view, pairs whose sizes differ and unreadable images",
    )
    pairs.set_defaults(handler=run_pairs)

    check = sub.add_parser(
        "check",
        help="count samples, list broken files, summarise ground truth",
        description="Load every sample of a dataset; report missing or unreadable files and disparity statistics.",
    )
    add_dataset_arguments(check, split_default="all")
    check.add_argument("--limit", type=positive_int, help="check only the first N samples")
    check.add_argument("--json", dest="json_out", help="also write the report as JSON here")
    check.set_defaults(handler=run_check)


def add_dataset_arguments(parser: argparse.ArgumentParser, split_default: str = "train") -> None:
    """The options that select a dataset, shared by every command that reads one."""
    from stereodistill.data.datasets import DATASETS

    parser.add_argument("--dataset", required=True, help=f"one of: {', '.join(DATASETS.names())}")
    parser.add_argument("--root", required=True, help="dataset root folder (for 'pairs': the CSV file)")
    parser.add_argument("--split", default=split_default, help=f"train, test or all (default {split_default})")
    parser.add_argument("--list", dest="list_file", help="only the samples named in this file (one per line)")
    parser.add_argument("--max-disp", type=max_disp, help="ground truth at or above this is not valid")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reader-specific option, e.g. pass_=cleanpass or png_scale=256 (repeatable)",
    )


def parse_options(items: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option expects KEY=VALUE, got {item!r}")
        options[key.strip()] = yaml.safe_load(value)
    return options


def build_from_args(args: argparse.Namespace):
    from stereodistill.data.datasets import build_dataset

    options = parse_options(args.option)
    try:
        return build_dataset(
            args.dataset, args.root, split=args.split, list_file=args.list_file, max_disp=args.max_disp, **options
        )
    except TypeError as exc:
        raise ConfigError(f"bad option for dataset {args.dataset!r}: {exc}") from None


def run_synth(args: argparse.Namespace) -> int:
    from stereodistill.data.synthetic import SynthConfig, write_synthetic

    height, width = args.size
    config = SynthConfig(height=height, width=width, max_disp=args.max_disp)

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r  {done}/{total} pairs", end="" if done < total else "\n", file=sys.stderr, flush=True)

    paths = write_synthetic(args.out, args.pairs, config, seed=args.seed, split=args.split, progress=progress)
    print(f"wrote {len(paths)} {args.split} pairs ({height}x{width}, max disparity {args.max_disp}) to {args.out}")
    return 0


def run_pairs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stereodistill.data.pairing import folder_pairs, views_of
    from stereodistill.fileio import check_writable

    left = Path(args.left_dir)
    right = Path(args.right_dir) if args.right_dir else None
    if right is None:
        left, right = views_of(left)
    disp = Path(args.disp) if args.disp else None
    check_writable(args.out)  # before every header is read, not after
    # Every file is read whole: a list is made once and trusted by every run after it, so a truncated
    # image is named now rather than when a run reaches it.
    found = folder_pairs(left, right, disp, args.skip_bad, decode=True)
    found.write(Path(args.out), truth_column=disp is not None)
    for problem in found.skipped:
        print(f"  SKIPPED {problem}")
    count = len(found.rows)
    truth = f", {found.with_truth} with ground truth" if disp is not None else ""
    print(f"wrote {args.out}: {count} pair{'s' if count != 1 else ''}{truth}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from stereodistill.data.check import check_dataset

    dataset = build_from_args(args)
    dataset.warn_unlisted(args.list_file)
    reads = [args.root, *([args.list_file] if args.list_file else []), *dataset_files(dataset)]
    check_output(args.json_out, "--json", reads)  # never the files it checks: before the check, not after
    report = check_dataset(dataset, limit=args.limit)
    print("\n".join(report.lines()))
    if args.json_out:
        write_json(args.json_out, report.to_dict())
    return 1 if report.broken else 0

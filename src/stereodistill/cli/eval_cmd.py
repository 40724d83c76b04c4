"""``stereodistill eval``: metrics of a checkpoint on a dataset, pooled and per image (README, Metrics)."""

from __future__ import annotations

import argparse
import sys

from stereodistill.cli.args import add_device, check_output, dataset_files, max_disp, positive_int
from stereodistill.errors import ConfigError, DataError
from stereodistill.evaluate.coverage import coverage_line, left_out_warning
from stereodistill.fileio import write_json


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "eval",
        help="evaluate a checkpoint on a dataset (EPE, D1, bad-0.5/1/2/3)",
        description="Evaluate a checkpoint: pooled metrics and per-image means of EPE, D1 and bad-0.5/1/2/3 over "
        "valid pixels (ground truth finite, > 0, < max disparity, non-occluded where the dataset says so).",
    )
    parser.add_argument(
        "checkpoint",
        help="a stereodistill checkpoint (NAME, NAME.safetensors or NAME.json), or sgbm (the classical baseline)",
    )
    parser.add_argument("--dataset", help="dataset reader (see `stereodistill data check --help`)")
    parser.add_argument("--root", help="dataset root folder")
    parser.add_argument(
        "--list",
        dest="list_file",
        help="the samples, from a file: with --dataset, only those named in it (one id or image path per line, as "
        "everywhere); without, a pairs CSV (left,right[,disp[,mask]]) that lists the pairs themselves",
    )
    parser.add_argument(
        "--split",
        help="train, test or all (default: the split with ground truth: test for sceneflow where it reads "
        "FlyingThings3D, train for its driving and monkaa alone and for kitti2012, kitti2015, middlebury and eth3d, "
        "whose test splits ship none; all with --list, which then picks the pairs)",
    )
    parser.add_argument(
        "--max-disp",
        type=max_disp,
        help="evaluated range (default: the model's max disparity); for sgbm also its search range (default 192)",
    )
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="reader option")
    parser.add_argument("--limit", type=positive_int, help="evaluate only the first N samples")
    parser.add_argument("--skip-bad", action="store_true", help="list and skip unreadable samples instead of stopping")
    add_device(parser)
    parser.add_argument("--json", dest="json_out", help="write pooled, per-image mean and per-image metrics here")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from stereodistill.checkpoint import load_network
    from stereodistill.cli.data_cmd import parse_options
    from stereodistill.data.datasets import DATASETS, build_dataset
    from stereodistill.evaluate.evaluator import evaluate_dataset
    from stereodistill.evaluate.metrics import format_table
    from stereodistill.runtime import resolve_device
    from stereodistill.train.logging import ProgressClock

    if args.list_file is None and args.dataset is None:
        raise ConfigError("give either --dataset NAME --root DIR [--list FILE], or --list FILE.csv")
    pairs_csv = args.list_file if args.dataset is None else None
    if args.dataset is not None and args.root is None:
        raise ConfigError(f"--dataset {args.dataset} needs --root")
    from stereodistill.checkpoint import checkpoint_paths

    reads = [*checkpoint_paths(args.checkpoint), *(p for p in (args.list_file, args.root) if p)]
    check_output(args.json_out, "--json", reads)  # before the evaluation, not after it
    device = resolve_device(args.device)
    model = load_network(args.checkpoint, map_location=device, max_disp=args.max_disp)
    max_disp = args.max_disp if args.max_disp is not None else float(model.max_disp)
    if max_disp > model.max_disp:
        print(
            f"warning: --max-disp {max_disp:g} is above {model.arch}'s range ({model.max_disp} px): it cannot predict "
            "the disparities between them",
            file=sys.stderr,
        )
    name, root = ("pairs", pairs_csv) if pairs_csv else (args.dataset, args.root)
    restrict = {"list_file": args.list_file} if args.dataset is not None and args.list_file else {}
    options = parse_options(args.option)
    split = args.split or DATASETS.get(name).scoring_split(restrict.get("list_file"), options)
    try:
        dataset = build_dataset(name, root, split=split, max_disp=max_disp, **restrict, **options)
    except TypeError as exc:
        raise ConfigError(f"bad --option for dataset {name!r}: {exc}") from None
    check_output(args.json_out, "--json", dataset_files(dataset))  # nor any file of the pairs it scores
    dataset.warn_unlisted(restrict.get("list_file"))
    what = f"{name} ({root})" if pairs_csv else f"{name} ({root}, split {split})"
    if not any(files.disp is not None for files in dataset.files):
        raise DataError(
            root,
            f"none of the {plural(len(dataset), 'pair')} of {what} has ground truth (the test splits of KITTI, "
            "Middlebury and ETH3D ship none); evaluate a split with ground truth, or use `stereodistill infer`",
        )

    def predict(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return model(left.to(device), right.to(device)).disparity

    clock = ProgressClock()

    def progress(done: int, total: int) -> None:
        """Redrawn on a terminal; in a log, a line every 30 s and at the end."""
        if sys.stderr.isatty():
            print(f"\r  {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif clock.due(done == total):
            print(f"  evaluated {done}/{total}", file=sys.stderr, flush=True)

    accumulator = evaluate_dataset(predict, dataset, progress=progress, limit=args.limit, skip_bad=args.skip_bad)
    for item in accumulator.skipped:
        print(f"  SKIPPED {item['id']}: {item['error']}")
    if not accumulator.per_image:
        raise DataError(root, f"every sample of {what} was skipped as unreadable: nothing was evaluated")
    scored = sum(1 for row in accumulator.per_image if int(row["n_valid"]) > 0)
    if not scored:
        raise DataError(root, f"no image of {what} has a valid ground-truth pixel below {max_disp:g} px")
    print(
        f"{model.arch} on {what}: {plural(len(accumulator.per_image), 'image')}, "
        f"{scored} with valid ground truth, evaluated below {max_disp:g} px"
    )
    print(coverage_line(accumulator.coverage(), max_disp))
    warning = left_out_warning(accumulator.coverage(), max_disp)
    if warning:
        print(warning, file=sys.stderr)
    print(format_table([("pooled", accumulator.pooled()), ("per-image mean", accumulator.per_image_mean())]))
    if accumulator.totals["nonfinite"]:
        print(
            f"warning: the network predicted {int(accumulator.totals['nonfinite'])} scored pixel(s) as NaN or "
            "infinite: they count as infinite errors (an infinite EPE is null in --json, beside nonfinite_pixels)",
            file=sys.stderr,
        )
    if args.json_out:
        summary = {
            **accumulator.summary(),
            "skipped": accumulator.skipped,
            "checkpoint": str(args.checkpoint),
            "dataset": name,
            "root": str(root),
            "split": None if pairs_csv else split,
            "max_disp": max_disp,
        }
        write_json(args.json_out, summary)
    return 0


def plural(count: int, noun: str) -> str:
    """ "1 image", "2 images"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"

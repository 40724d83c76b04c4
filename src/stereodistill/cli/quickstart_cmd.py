"""``stereodistill quickstart``: the first job a new user runs (``make quickstart``).

Teacher, then the same student twice — from scratch and distilled — on the embedded synthetic data;
evaluation on its held-out test split and zero-shot on the real Middlebury Motorcycle pair;
latency, parameters and MACs; ``report.json``, ``report.md`` and ``report.html`` under ``--out``.
The recipe is ``stereodistill/experiments/recipes/quickstart.yaml`` (``--recipe`` takes a copy).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from stereodistill.cli.args import add_device, non_negative_int, size


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "quickstart",
        help="teacher -> scratch and distilled students -> evaluation, benchmark, report (the main job)",
        description="Train a teacher, then one student from scratch and one distilled from the teacher for the "
        "same steps, on the embedded synthetic data; evaluate all three on its test split and zero-shot on the "
        "Middlebury Motorcycle pair; benchmark them; write report.json, report.md and report.html.",
    )
    parser.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="random seed of the weights, the batch order and the test split (the training scenes come from "
        "data.train.seed, 0 unless the recipe sets it); default 0",
    )
    parser.add_argument("--recipe", help="a recipe YAML (default: the packaged quickstart.yaml)")
    parser.add_argument(
        "--budget",
        "--steps-scale",  # the older name
        dest="steps_scale",
        type=float,
        default=1.0,
        metavar="FACTOR",
        help="multiply every run's steps, as ablate's numeric --budget does (e.g. 10 on a GPU; default 1)",
    )
    parser.add_argument(
        "--student",
        metavar="ARCH",
        help="student architecture (default: the recipe's, lean); e.g. lean-s, lean-xs, lean-l, dsnet",
    )
    add_device(parser)
    parser.add_argument("--bench-size", type=size, help="latency input HxW (default from the recipe: 256x512)")
    parser.add_argument("--force", action="store_true", help="start over: clear the output folder if it holds a run")
    parser.add_argument(
        "--one-at-a-time",
        dest="side_by_side",
        action="store_false",
        help="train the two students one after the other, each with every thread (default on a CPU with two "
        "threads or more: side by side, one process each with half the threads, which on 2 cores trains about "
        "1.45x the steps per second)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from stereodistill.errors import ConfigError
    from stereodistill.experiments.quickstart import load_recipe, run_quickstart
    from stereodistill.report.quickstart_report import markdown

    if not (math.isfinite(args.steps_scale) and args.steps_scale > 0):
        raise ConfigError(f"--budget must be a positive, finite factor, got {args.steps_scale}")
    out = Path(args.out)
    report = run_quickstart(
        out,
        reads=[Path(args.recipe)] if args.recipe else [],
        seed=args.seed,
        recipe=load_recipe(args.recipe),
        steps_scale=args.steps_scale,
        device=args.device,
        bench_size=args.bench_size,
        student=args.student,
        force=args.force,
        side_by_side=None if args.side_by_side else False,
        log=lambda line: print(line, flush=True),
    )
    print()
    print(markdown(report))
    print(f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'report.html'}", file=sys.stderr)
    return 0

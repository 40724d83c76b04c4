"""``stereodistill ablate``: run a grid of distillation variants over seeds and summarise it."""

from __future__ import annotations

import argparse

from stereodistill.cli.args import positive_int


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "ablate",
        help="run an ablation grid (cells x seeds), resumable, with mean, std and 95 %% CIs",
        description="Expand the ablation file's fixed rows and axes into cells, run every unfinished (cell, "
        "seed) in its own process (several at a time with --parallel), evaluate each on the named datasets, "
        "benchmark each cell's network when the file has a bench section, and write ablation.json, ablation.md "
        "and ablation.html. Rerun after a kill: finished runs are kept (unless their config changed).",
    )
    parser.add_argument("config", help="ablation file (YAML)")
    parser.add_argument("--out", help="output folder (default runs/ablations/NAME)")
    parser.add_argument("--parallel", type=positive_int, help="runs at a time (default: the file's, else 1)")
    parser.add_argument("--report-only", action="store_true", help="run nothing; summarise the runs finished so far")
    parser.add_argument(
        "--budget",
        help="a named budget of the file (e.g. gpu), or a number that scales every cell's steps; the default "
        "output folder gets the suffix -budget-BUDGET (--out is used as given)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from stereodistill.experiments.ablation import run_ablation

    summary = run_ablation(
        args.config,
        args.out,
        args.parallel,
        log=lambda line: print(line, flush=True),
        report_only=args.report_only,
        budget=args.budget,
    )
    return 1 if summary["failures"] else 0

"""Training throughput: one run with every thread against two runs side by side with half each.

Usage: ``python benchmarks/bench_side_by_side.py [--arch lean] [--option fine=4 ...] [--crop 64x128]
[--batch 4] [--steps 100] [--threads 2]``. Trains the network on the embedded synthetic data as the
quickstart does (no validation, no BatchNorm recomputation): once alone with ``--threads`` threads,
then twice at once, one process each with half the threads (``experiments.side_by_side``, as the
quickstart trains its two students). Prints each run's time (its set-up and training, in its own
process) and the steps per second of the machine: a ratio above 1 means that splitting the threads
trains more per second. Starting the two processes (importing PyTorch) is shown apart.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from stereodistill.cli.args import size
from stereodistill.cli.data_cmd import parse_options
from stereodistill.config import from_dict
from stereodistill.experiments.side_by_side import Job, train_side_by_side
from stereodistill.runtime import torch_threads
from stereodistill.train.config import RunConfig
from stereodistill.train.trainer import Trainer


def run_config(args: argparse.Namespace, output: Path) -> RunConfig:
    height, width = args.crop
    options = parse_options(args.option)
    return from_dict(
        RunConfig,
        {
            "model": {"arch": args.arch, "max_disp": args.max_disp, "options": options},
            "data": {
                "train": {
                    "dataset": "synthetic",
                    "pairs": 64,
                    "size": [height + 32, width + 64],
                    "max_disp": args.max_disp,
                },
                "crop": [height, width],
                "batch_size": args.batch,
            },
            "steps": args.steps,
            "optim": {"name": "adam", "lr": 1e-3, "schedule": "constant"},
            "log_every": args.steps,
            "output": str(output),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lean")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a model option")
    parser.add_argument("--crop", type=size, default=(64, 128), help="training crop HxW (default 64x128)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-disp", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="threads of the lone run (split in two beside)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        with torch_threads(args.threads):
            started = time.perf_counter()
            Trainer(run_config(args, root / "alone"), distill=False).run()
            alone = time.perf_counter() - started
        half = max(1, args.threads // 2)
        jobs = {name: Job(run_config(args, root / name), distill=False) for name in ("a", "b")}
        started = time.perf_counter()
        done = train_side_by_side(jobs, half, log=lambda _: None)
        together = time.perf_counter() - started
    options = "".join(f", {item}" for item in args.option)
    slowest = max(done[name]["seconds"] for name in jobs)  # set-up and training, as the lone run's
    runs = ", ".join(f"{done[name]['seconds']:.1f}" for name in jobs)
    print(f"{args.arch}{options}, crop {args.crop[0]}x{args.crop[1]}, batch {args.batch}, {args.steps} steps")
    print(f"  alone, {args.threads} thread(s): {alone:.1f} s, {args.steps / alone:.2f} steps/s")
    print(
        f"  two side by side, {half} thread(s) each: {runs} s ({together:.1f} s with starting the processes), "
        f"{2 * args.steps / slowest:.2f} steps/s"
    )
    print(f"  side by side / alone: {2 * args.steps / slowest / (args.steps / alone):.2f}x the steps per second")


if __name__ == "__main__":
    main()

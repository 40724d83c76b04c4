"""Does ``stereodistill adapt`` help beyond the pairs it trains on? Motorcycle split into two halves.

Usage::

    python benchmarks/adapt_heldout.py QUICKSTART [QUICKSTART ...] --out DIR [--steps 300] [--jobs 2]
        [--variant "defaults"] [--variant "slow: --lr 1e-4"] [--variant "sgbm: --teacher sgbm"] ...

The quickstart's Motorcycle pair (half size, 250×370) is cut into its left and right halves of
185 columns, both views the same way, each written as its own ``pairs`` CSV with ground truth. For
every quickstart folder, every variant and both halves, the quickstart's distilled student is
adapted on one half (``stereodistill adapt TEACHER STUDENT --unlabeled HALF/pairs.csv``, the
variant's flags added; ``--teacher sgbm`` replaces the quickstart's teacher) and then scored with
``stereodistill eval`` on both halves: the one it adapted on (the footage) and the other (held
out, never seen). Each process runs with one CPU thread, ``--jobs`` at a time. Prints one row per
variant: the mean change of EPE on the footage and on the held-out half against the student before,
and on how many runs the held-out half got worse; writes every figure to ``DIR/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from stereodistill.data.motorcycle import fit_factor, load_motorcycle, reduce_pair, write_pair
from stereodistill.fileio import write_json

LAUNCH = "from stereodistill.cli.main import entry; entry()"
MAX_DISP = 32
HALVES = ("left", "right")


def write_halves(out: Path) -> dict[str, Path]:
    """The half-size pair cut at its middle column into two pairs, each with its ``pairs.csv``."""
    pair = load_motorcycle()
    left, right, disp = reduce_pair(*pair, fit_factor(pair[2], MAX_DISP))
    middle = left.shape[1] // 2
    cuts = {"left": slice(0, middle), "right": slice(middle, 2 * middle)}
    return {
        name: write_pair(out / name, *(np.ascontiguousarray(view[:, cut]) for view in (left, right, disp)))
        for name, cut in cuts.items()
    }


def run_cli(args: list[str], log: Path) -> None:
    """One ``stereodistill`` command with one thread; its output goes to ``log``; a failure stops the script."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        code = subprocess.run([sys.executable, "-c", LAUNCH, *args], stdout=handle, stderr=subprocess.STDOUT, env=env)
    if code.returncode:
        raise SystemExit(f"failed ({code.returncode}): stereodistill {shlex.join(args)}; see {log}")


def epe(model: str, pairs: Path, out: Path) -> float:
    """Pooled EPE of ``model`` on one half, through ``stereodistill eval``."""
    if not out.exists():
        run_cli(
            ["eval", model, "--list", str(pairs), "--max-disp", str(MAX_DISP), "--json", str(out)],
            out.with_suffix(".log"),
        )
    return float(json.loads(out.read_text())["pooled"]["epe"])


def adapt_and_score(
    quickstart: Path, variant: str, flags: list[str], footage: str, halves: dict[str, Path], out: Path, steps: int
) -> dict[str, Any]:
    """Adapt the quickstart's distilled student on one half, then score it on both."""
    teacher = str(quickstart / "runs" / "teacher" / "model")
    if "--teacher" in flags:
        at = flags.index("--teacher")
        teacher, flags = flags[at + 1], flags[:at] + flags[at + 2 :]
    student = str(quickstart / "runs" / "student_distilled" / "model")
    run = out / "runs" / variant / quickstart.name / footage
    if not (run / "model.safetensors").exists():
        args = [
            "adapt",
            teacher,
            student,
            "--unlabeled",
            str(halves[footage]),
            "--out",
            str(run),
            "--steps",
            str(steps),
            "--force",
            *flags,
        ]
        run_cli(args, out / "logs" / variant / quickstart.name / f"{footage}.log")
    held_out = next(name for name in HALVES if name != footage)
    scores = {
        "before": {
            name: epe(student, halves[name], out / "scores" / quickstart.name / f"before_{name}.json")
            for name in HALVES
        },
        "after": {name: epe(str(run / "model"), halves[name], run / f"eval_{name}.json") for name in HALVES},
    }
    return {"quickstart": str(quickstart), "variant": variant, "footage": footage, "held_out": held_out, **scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "quickstarts", nargs="+", type=Path, help="quickstart output folders (runs/teacher, runs/student_distilled)"
    )
    parser.add_argument("--out", type=Path, required=True, help="working folder (halves, runs, scores, summary.json)")
    parser.add_argument("--steps", type=int, default=300, help="adapt steps (default 300)")
    parser.add_argument("--jobs", type=int, default=1, help="processes at a time, one thread each (default 1)")
    parser.add_argument("--variant", action="append", help='"NAME" or "NAME: ADAPT FLAGS" (default: "defaults")')
    args = parser.parse_args()
    variants = [
        (name.strip(), shlex.split(rest)) for name, _, rest in (v.partition(":") for v in args.variant or ["defaults"])
    ]
    halves = write_halves(args.out / "halves")
    for name in HALVES:  # the classical baseline on each half, for reference
        print(
            f"sgbm on the {name} half: EPE {epe('sgbm', halves[name], args.out / 'scores' / f'sgbm_{name}.json'):.3f}"
        )
    jobs = [(q, v, f, h) for v, f in variants for q in args.quickstarts for h in HALVES]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda job: adapt_and_score(*job, halves, args.out, args.steps), jobs))
    write_json(args.out / "summary.json", rows)
    print(
        "| variant | runs | EPE change on the footage | on the held-out half | held-out worse |\n|---|---|---|---|---|"
    )
    for variant, _ in variants:
        mine = [row for row in rows if row["variant"] == variant]
        seen = [row["after"][row["footage"]] - row["before"][row["footage"]] for row in mine]
        unseen = [row["after"][row["held_out"]] - row["before"][row["held_out"]] for row in mine]
        worse = sum(change > 0 for change in unseen)
        print(f"| {variant} | {len(mine)} | {np.mean(seen):+.3f} | {np.mean(unseen):+.3f} | {worse} of {len(mine)} |")


if __name__ == "__main__":
    main()

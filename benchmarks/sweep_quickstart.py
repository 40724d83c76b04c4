"""Run the quickstart over recipe variants and seeds at once, and tabulate Motorcycle and synthetic EPE.

Usage::

    python benchmarks/sweep_quickstart.py --out DIR [--jobs N] [--device cuda] [--seeds 0 1 2]
        [--budget 1] [--watch-motorcycle] [--deadline SECONDS]
        --variant base --variant "photo: common.data.train.options.photo_prob=0.5" ...

A variant is ``NAME`` or ``NAME: KEY=VALUE KEY=VALUE ...``, dotted overrides of the packaged recipe
(the grammar of every override); ``NAME@B`` multiplies its steps by ``B`` instead of ``--budget``.
Each (variant, seed) is one ``stereodistill quickstart`` process with one CPU thread, ``--jobs`` at a
time (on a GPU, many share the card). ``--watch-motorcycle`` makes the Motorcycle pair each run's
validation set, so that ``scalars.csv`` records its learning curve: a diagnostic only (the
quickstart still keeps each run's last weights, never the best on the pair). Writes
``DIR/summary.json`` (each run's metrics, timings and curves, rewritten as runs finish) and
``DIR/summary.md`` (one row per run); runs still going at ``--deadline`` are stopped and reported
with the curves they have.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from stereodistill.config import apply_overrides
from stereodistill.data.motorcycle import NAME as MOTORCYCLE
from stereodistill.experiments.quickstart import ROLES, load_recipe

LAUNCH = "from stereodistill.cli.main import entry; entry()"


def parse_variant(text: str, budget: float) -> tuple[str, float, list[str]]:
    """``NAME[@B][: KEY=VALUE ...]`` → (name, budget, overrides)."""
    head, _, rest = text.partition(":")
    name, _, scale = head.strip().partition("@")
    return name, float(scale) if scale else budget, rest.split()


def curves(run: Path) -> list[tuple[int, float | None, float | None]]:
    """(step, val EPE, val bad-3) of a run's scalars.csv (long format: step, stage, name, value)."""
    rows: dict[int, dict[str, float]] = {}
    path = run / "scalars.csv"
    if path.exists():
        with path.open() as handle:
            for row in csv.DictReader(handle):
                if row["name"] in ("val/epe", "val/bad3"):
                    rows.setdefault(int(row["step"]), {})[row["name"]] = round(float(row["value"]), 4)
    return [(step, v.get("val/epe"), v.get("val/bad3")) for step, v in sorted(rows.items())]


def summary_of(folder: Path, returncode: int | None) -> dict[str, Any]:
    """What one quickstart left: Motorcycle and synthetic metrics per model, SGBM, timings, curves."""
    entry: dict[str, Any] = {"returncode": returncode}
    report = folder / "report.json"
    if report.exists():
        data = json.loads(report.read_text())
        rows = {**data["models"], **data.get("baselines", {})}
        entry["metrics"] = {
            name: {dataset: {k: row["metrics"][dataset][k] for k in ("epe", "bad3")} for dataset in row["metrics"]}
            for name, row in rows.items()
        }
        entry["timing_s"] = data.get("timing_s")
    entry["curves"] = {role: curves(folder / "runs" / role) for role in ROLES}
    return entry


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: Motorcycle EPE (bad-3) of each model and SGBM, synthetic EPE, per run."""
    names = [*ROLES, "sgbm"]
    header = [f"{n} Motorcycle" for n in names] + [f"{n} synthetic" for n in names]
    lines = ["| run | " + " | ".join(header) + " |", "|---" * (1 + len(header)) + "|"]
    for key, entry in results.items():
        metrics = entry.get("metrics")
        if metrics is None:
            last = {role: (c[-1][:2] if c else None) for role, c in entry["curves"].items()}
            lines.append(f"| {key} | stopped; last validation (step, EPE): {last} |")
            continue
        moto = [f"{metrics[n][MOTORCYCLE]['epe']:.3f} ({100 * metrics[n][MOTORCYCLE]['bad3']:.1f} %)" for n in names]
        synth = [f"{metrics[n]['synthetic']['epe']:.3f}" for n in names]
        lines.append(f"| {key} | " + " | ".join(moto + synth) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variant", action="append", default=[], help="NAME[@BUDGET][: KEY=VALUE ...]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", type=float, default=1.0, help="steps factor of every variant without @B")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--watch-motorcycle", action="store_true")
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds; later runs are stopped")
    args = parser.parse_args()

    base = load_recipe()
    if args.watch_motorcycle:
        max_disp = base["common"]["model"]["max_disp"]
        base = apply_overrides(base, [f"common.data.val={{dataset: {MOTORCYCLE}, max_disp: {max_disp}}}"])
    args.out.mkdir(parents=True, exist_ok=True)
    queue = []
    for text in args.variant or ["base"]:
        name, budget, overrides = parse_variant(text, args.budget)
        recipe = args.out / f"{name}.yaml"
        recipe.write_text(yaml.safe_dump(apply_overrides(base, overrides), sort_keys=False))
        queue += [(f"{name}_s{seed}_b{budget:g}", recipe, seed, budget) for seed in args.seeds]

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    running: dict[str, subprocess.Popen[bytes]] = {}
    done: dict[str, int | None] = {}
    start = time.monotonic()
    while (queue or running) and time.monotonic() - start < args.deadline:
        while queue and len(running) < args.jobs:
            key, recipe, seed, budget = queue.pop(0)
            folder = args.out / key
            options = {"--recipe": recipe, "--seed": seed, "--budget": budget, "--out": folder, "--device": args.device}
            command = [sys.executable, "-c", LAUNCH, "quickstart", "--force"]
            command += [str(part) for pair in options.items() for part in pair]
            with (args.out / f"{key}.log").open("w") as log:
                running[key] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        time.sleep(5)
        for key, process in list(running.items()):
            if process.poll() is not None:
                done[key] = running.pop(key).returncode
        write_summary(args.out, {**done, **{key: None for key in running}})
    for key, process in running.items():
        process.kill()
        done[key] = None
    write_summary(args.out, done)
    print(table(json.loads((args.out / "summary.json").read_text())))


def write_summary(out: Path, runs: dict[str, int | None]) -> None:
    results = {key: summary_of(out / key, code) for key, code in runs.items()}
    (out / "summary.json").write_text(json.dumps(results, indent=1))
    (out / "summary.md").write_text(table(results))


if __name__ == "__main__":
    main()

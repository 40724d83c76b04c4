"""Running an ablation's (cell, seed) pairs: one spawned process and folder each, several at a time
(CPU threads split between them; with several GPUs, the processes take them in turn).

``cells/CELL/seedS/result.json`` marks a finished run and records the fingerprint of what it ran
(the cell's resolved config, the seed, the evaluation datasets and, for a distilled cell, its
teacher's fingerprint): a rerun keeps finished runs whose fingerprint still matches and redoes the
others. A cell whose teacher is another cell (``teacher_cell``) starts once that cell's run of the
same seed has finished, and fails without running if it failed. A failing run (exception,
non-finite loss, out of memory, a killed process) is recorded in ``error.json``; the rest go on.
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stereodistill.config import from_dict
from stereodistill.errors import DataError
from stereodistill.fileio import nan_for_null, read_record, write_json
from stereodistill.report.htmlpage import figures
from stereodistill.runtime import available_cpus, describe_exit, exit_with_parent
from stereodistill.train.config import DatasetConfig, RunConfig


@dataclass
class Cell:
    """One row of the ablation: a name, the run config it trains (seed applied per run), and the
    cell whose model of the same seed is its teacher, if any."""

    name: str
    config: dict[str, Any]
    distill: bool
    teacher_cell: str | None = None


#: A cell's exit status when the user interrupted it (as a shell reports Ctrl-C): no error.json.
INTERRUPTED = 130


def safe_name(text: str, keep: str = "-_=.,") -> str:
    """``text`` as one folder name: characters other than letters, digits and ``keep`` become ``_``."""
    return "".join(ch if ch.isalnum() or ch in keep else "_" for ch in text)


def cell_dir(out: Path, cell: str, seed: int) -> Path:
    return out / "cells" / safe_name(cell) / f"seed{seed}"


def model_path(out: Path, cell: str, seed: int) -> Path:
    """Where a finished run's model lies (a checkpoint path without suffix)."""
    return cell_dir(out, cell, seed) / "run" / "model"


def resolved_config(cell: Cell, seed: int, out: Path) -> dict[str, Any]:
    """The cell's run config for one seed, its teacher cell (if any) replaced by that cell's model."""
    config = copy.deepcopy(cell.config)
    if cell.teacher_cell is not None:
        config["teacher"] = {"checkpoint": str(model_path(out, cell.teacher_cell, seed))}
    return config


#: Raised when what a given eval spec measures changes (2: Motorcycle reduced to fit the range), so
#: that results measured the old way are evaluated again rather than reported as if current.
EVAL_PROTOCOL = 2


def fingerprints(
    cells: list[Cell], seeds: list[int], eval_sets: Mapping[str, Any] | None
) -> dict[tuple[str, int], str]:
    """``(cell, seed)`` → a hash of everything its result depends on, teachers' fingerprints included.

    With ``eval_sets`` None, the hash of what its *training* depends on: a run whose training
    fingerprint still matches only needs evaluating again.
    """
    by_name = {c.name: c for c in cells}
    prints: dict[tuple[str, int], str] = {}

    def of(cell: Cell, seed: int) -> str:
        key = (cell.name, seed)
        if key not in prints:
            teacher = of(by_name[cell.teacher_cell], seed) if cell.teacher_cell else None
            what = {"config": cell.config, "seed": seed, "teacher": teacher}
            if eval_sets is not None:
                what["eval"] = eval_sets
                what["eval_protocol"] = EVAL_PROTOCOL
            files = _input_files(cell.config)
            if files:
                what["files"] = files
            prints[key] = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return prints[key]

    for cell in cells:
        for seed in seeds:
            of(cell, seed)
    return prints


def _input_files(config: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """Size and modification time of the checkpoints a run reads (its teacher, its initial weights):
    retraining the teacher in place makes the runs that learnt from it stale."""
    from stereodistill.checkpoint import checkpoint_paths

    named = [config.get("teacher", {}).get("checkpoint"), config.get("model", {}).get("init")]
    stats = []
    for name in filter(None, named):
        for path in checkpoint_paths(Path(name)) if not name.startswith("<") else []:
            if path.is_file():
                stat = path.stat()
                stats.append((str(path), stat.st_size, stat.st_mtime_ns))
    return stats


def needs_training(folder: Path, train_fingerprint: str) -> bool:
    """False when the folder holds a model trained under this training fingerprint (only its
    evaluation is out of date)."""
    path = folder / "result.json"
    if not path.is_file() or not (folder / "run" / "model.json").is_file():
        return True
    return read_record(path, "delete it to run that cell again").get("train_fingerprint") != train_fingerprint


def set_aside(folder: Path) -> Path | None:
    """Move a finished run of another config (its result.json and run/) out of the way, beside the
    folder as ``seedS.stale-FINGERPRINT``, so that rerunning never destroys a trained model."""
    result = folder / "result.json"
    if not result.is_file():
        return None
    recorded = read_record(result, "delete it to run that cell again").get("fingerprint") or "unknown"
    target = folder.with_name(f"{folder.name}.stale-{recorded}")
    if target.exists():  # the same config set aside before: its newer run replaces it
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in ("result.json", "run"):
        if (folder / name).exists():
            (folder / name).rename(target / name)
    return target


def is_finished(folder: Path, fingerprint: str) -> bool:
    """A result.json whose fingerprint matches (results written before fingerprints existed count)."""
    path = folder / "result.json"
    if not path.is_file():
        return False
    recorded = read_record(path, "delete it to run that cell again").get("fingerprint")
    return recorded is None or recorded == fingerprint


def _run_one(
    parent: int,
    cell: Cell,
    seed: int,
    config: dict[str, Any],
    folder: str,
    eval_sets: dict[str, dict[str, Any]],
    threads: int,
    device: str,
    fingerprints: tuple[str, str],
    train: bool = True,
) -> None:
    """Child process: train one (cell, seed) (unless ``train`` is False: its model is up to date),
    evaluate it, write result.json — or error.json. ``fingerprints``: (full, training)."""
    exit_with_parent(parent)
    if device.startswith("cuda:"):  # this run's GPU only: no context or allocation on the others
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        device = "cuda"
    import torch

    from stereodistill.runtime import configure_cpu_math

    configure_cpu_math()
    torch.set_num_threads(threads)
    out = Path(folder)
    started = time.perf_counter()
    try:
        from stereodistill.checkpoint import load_model
        from stereodistill.evaluate.evaluator import evaluate_model
        from stereodistill.runtime import resolve_device
        from stereodistill.train.data import build as build_dataset
        from stereodistill.train.trainer import Trainer

        if train:
            shutil.rmtree(out / "run", ignore_errors=True)  # a run killed part-way starts again, cleanly
            data = {**config, "seed": seed, "output": str(out / "run"), "name": f"{cell.name}/seed{seed}"}
            data["device"] = device
            Trainer(from_dict(RunConfig, data), distill=cell.distill).run()
        dev = resolve_device(device)
        model = load_model(out / "run" / "model", map_location=dev)
        datasets = {
            name: build_dataset(from_dict(DatasetConfig, spec), max_disp=model.max_disp)
            for name, spec in eval_sets.items()
        }
        metrics = evaluate_model(model, datasets, dev)
        result = {
            "cell": cell.name,
            "seed": seed,
            "fingerprint": fingerprints[0],
            "train_fingerprint": fingerprints[1],
            "metrics": metrics,
            "seconds": time.perf_counter() - started,
        }
        write_json(out / "result.json", result)
    except KeyboardInterrupt:  # the user stopped the ablation: not a failure of this cell, which reruns
        sys.exit(INTERRUPTED)
    except BaseException as exc:  # recorded, the ablation goes on
        message = f"{type(exc).__name__}: {exc}"
        _write_error(out, cell.name, seed, fingerprints[0], message, traceback.format_exc()[-4000:])


def slot_devices(device: str, parallel: int) -> list[str]:
    """The device of each of the ``parallel`` run slots: on a machine with several GPUs the slots
    take them in turn (``auto`` or ``cuda``); otherwise every slot gets ``device``."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return [f"cuda:{slot % torch.cuda.device_count()}" for slot in range(parallel)]
    return [device] * parallel


def _write_error(folder: Path, cell: str, seed: int, fingerprint: str, message: str, trace: str | None = None) -> None:
    """Record a failed run; the fingerprint lets a later config tell its own failures from stale ones."""
    folder.mkdir(parents=True, exist_ok=True)
    error = {"cell": cell, "seed": seed, "fingerprint": fingerprint, "error": message}
    if trace:
        error["traceback"] = trace
    write_json(folder / "error.json", error)


def run_cells(
    cells: list[Cell],
    seeds: list[int],
    eval_sets: dict[str, dict[str, Any]],
    out: Path,
    prints: Mapping[tuple[str, int], str],
    *,
    parallel: int = 1,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> None:
    """Run every unfinished (cell, seed), ``parallel`` processes at a time, teachers before students.

    ``prints`` are the runs' current fingerprints (:func:`fingerprints`). A run whose training is
    unchanged and only its evaluation is out of date is evaluated again, not retrained."""
    train_prints = fingerprints(cells, seeds, None)
    todo: list[tuple[Cell, int, Path]] = []
    retrain: dict[tuple[str, int], bool] = {}
    stale = 0
    # Seed-major: every cell gets its first seed before any gets its second, so a partial ablation
    # (stopped, or read with --report-only) already covers every row.
    for seed in seeds:
        for cell in cells:
            folder = cell_dir(out, cell.name, seed)
            if is_finished(folder, prints[cell.name, seed]):
                continue
            stale += (folder / "result.json").is_file()
            retrain[cell.name, seed] = needs_training(folder, train_prints[cell.name, seed])
            if retrain[cell.name, seed] and (moved := set_aside(folder)) is not None:
                log(f"  {cell.name} seed {seed} ran under another config: set aside in {moved}")
            (folder / "error.json").unlink(missing_ok=True)
            todo.append((cell, seed, folder))
    done = len(cells) * len(seeds) - len(todo)
    counted = " × ".join(
        f"{n} {noun}{'' if n == 1 else 's'}" for n, noun in ((len(cells), "cell"), (len(seeds), "seed"))
    )
    log(f"{counted}: {done} finished before, {len(todo)} to run")
    if stale:
        again = sum(not retrain[c.name, s] for c, s, _ in todo)
        log(f"  ({stale} of them finished under another config or teacher; {again} only need evaluating again)")
    threads = max(1, available_cpus() // parallel)
    devices = slot_devices(device, parallel)
    ctx = mp.get_context("spawn")
    running: list[tuple[Any, Cell, int, Path, int]] = []

    def teacher_state(cell: Cell, seed: int) -> str:
        if cell.teacher_cell is None:
            return "ready"
        folder = cell_dir(out, cell.teacher_cell, seed)
        if is_finished(folder, prints[cell.teacher_cell, seed]):
            return "ready"
        waiting = any(c.name == cell.teacher_cell and s == seed for c, s, _ in todo)
        waiting |= any(c.name == cell.teacher_cell and s == seed for _, c, s, _, _ in running)
        return "waiting" if waiting else "failed"

    while todo or running:
        for item in list(todo):
            if len(running) >= parallel:
                break
            cell, seed, folder = item
            state = teacher_state(cell, seed)
            if state == "waiting":
                continue
            todo.remove(item)
            if state == "failed":
                message = f"its teacher, cell {cell.teacher_cell!r} seed {seed}, did not finish"
                _write_error(folder, cell.name, seed, prints[cell.name, seed], message)
                log(f"  FAILED {cell.name} seed {seed}: {message}")
                continue
            folder.mkdir(parents=True, exist_ok=True)
            config = resolved_config(cell, seed, out)
            slot = min(set(range(parallel)) - {r[4] for r in running})
            both = (prints[cell.name, seed], train_prints[cell.name, seed])
            train = retrain[cell.name, seed]
            args = (os.getpid(), cell, seed, config, str(folder), eval_sets, threads, devices[slot], both, train)
            process = ctx.Process(target=_run_one, args=args, daemon=False)
            process.start()
            running.append((process, cell, seed, folder, slot))
        for item in list(running):
            process, cell, seed, folder, _ = item
            if process.is_alive():
                continue
            process.join()
            running.remove(item)
            if is_finished(folder, prints[cell.name, seed]):
                log(f"  done   {cell.name} seed {seed}")
                continue
            if process.exitcode in (INTERRUPTED, -signal.SIGINT) and not (folder / "error.json").is_file():
                log(f"  stopped {cell.name} seed {seed}: interrupted, not recorded (a rerun redoes it)")
                continue
            if not (folder / "error.json").is_file():
                message = f"process died ({describe_exit(process.exitcode)})"
                _write_error(folder, cell.name, seed, prints[cell.name, seed], message)
            reason = read_record(folder / "error.json", "delete it to run that cell again").get("error")
            log(f"  FAILED {cell.name} seed {seed}: {reason}")
        time.sleep(0.2)


def bench_cells(
    cells: list[Cell],
    seeds: list[int],
    out: Path,
    *,
    size: tuple[int, int],
    repeats: int,
    warmup: int,
    device: str,
    reference: str | None,
    baselines: tuple[list[str], int] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Latency, parameters and MACs of each cell's network (its first finished seed), measured one
    network at a time with every thread, after training; written to ``bench.json``. ``baselines``:
    (names, max disparity) of classical networks timed beside them."""
    from stereodistill.errors import StereoDistillError
    from stereodistill.evaluate.benchmark import BUSY_SPREAD, benchmark, spread
    from stereodistill.runtime import machine_info, resolve_device

    dev = resolve_device(device)
    threads = available_cpus()
    height, width = size
    results: dict[str, Any] = {}
    runs: list[tuple[str, str, int | None, int]] = []  # row name, network, seed, max disparity
    for cell in cells:
        seed = next((s for s in seeds if (cell_dir(out, cell.name, s) / "result.json").is_file()), None)
        if seed is not None:
            runs.append((cell.name, str(model_path(out, cell.name, seed)), seed, 192))
    if baselines:
        names, max_disp = baselines
        runs += [(name, name, None, max_disp) for name in names]
    for row_name, network, seed, max_disp in runs:
        try:
            (row,) = benchmark([network], height, width, str(dev), repeats, warmup, max_disp=max_disp, threads=threads)
        except StereoDistillError as exc:
            results[row_name] = {"error": str(exc)}
            log(f"  bench  {row_name}: FAILED {exc}")
            continue
        keys = ("arch", "params", "gmacs", "latency_ms", "latency_min_ms", "latency_max_ms")
        results[row_name] = {k: row[k] for k in keys}
        results[row_name]["seed"] = seed
        if seed is not None:  # which network was timed: a later config's report leaves it out
            result = read_record(cell_dir(out, row_name, seed) / "result.json", "delete it to run that cell again")
            results[row_name]["fingerprint"] = result.get("fingerprint")
        noisy = spread(row) > BUSY_SPREAD
        results[row_name]["noisy"] = noisy
        log(f"  bench  {row_name} ({row['arch']}): {figures(row['latency_ms'])} ms")
        if noisy:
            log(
                f"  warning: {row_name}'s latencies vary by more than {BUSY_SPREAD:.0%} of their median "
                f"({figures(row['latency_min_ms'])}–{figures(row['latency_max_ms'])} ms): the machine was probably "
                "busy; rerun on an idle machine (ablate --report-only keeps the results, a rerun benchmarks again)"
            )
    bench = {
        "size": [height, width],
        "device": dev.type,
        "threads": threads,
        "repeats": repeats,
        "warmup": warmup,
        "reference": reference,
        "machine": machine_info(),
        "cells": results,
    }
    write_json(out / "bench.json", bench)
    return bench


def baseline_file(out: Path, name: str) -> Path:
    return out / "baselines" / safe_name(name) / "result.json"


def run_baselines(
    names: list[str],
    max_disp: int,
    eval_sets: Mapping[str, dict[str, Any]],
    out: Path,
    *,
    device: str,
    log: Callable[[str], None] = print,
) -> None:
    """Evaluate each classical network (``sgbm``: nothing to train, the same output on every seed)
    on the ablation's evaluation sets; ``baselines/NAME/result.json``, keyed by those sets."""
    from stereodistill.checkpoint import load_network
    from stereodistill.evaluate.evaluator import evaluate_model
    from stereodistill.runtime import resolve_device
    from stereodistill.train.data import build as build_dataset

    dev = resolve_device(device)
    datasets = {
        name: build_dataset(from_dict(DatasetConfig, spec), max_disp=max_disp) for name, spec in eval_sets.items()
    }
    for name in names:
        started = time.perf_counter()
        metrics = evaluate_model(load_network(name, dev, max_disp=max_disp), datasets, dev)
        result = {"baseline": name, "max_disp": max_disp, "eval": dict(eval_sets), "metrics": metrics}
        write_json(baseline_file(out, name), result)
        log(f"  baseline {name}: evaluated in {time.perf_counter() - started:.0f} s")


def collect_baselines(
    names: list[str], max_disp: int, eval_sets: Mapping[str, dict[str, Any]], out: Path
) -> dict[str, dict[str, Any]]:
    """Each baseline's metrics, when evaluated on these very sets at this range."""
    found = {}
    for name in names:
        path = baseline_file(out, name)
        if path.is_file():
            result = read_record(path, "delete it to evaluate the baseline again")
            if result.get("eval") == dict(eval_sets) and result.get("max_disp") == max_disp:
                if not isinstance(result.get("metrics"), dict):
                    raise DataError(path, "is damaged: it holds no metrics; delete it to evaluate the baseline again")
                found[name] = nan_for_null(result["metrics"])
    return found

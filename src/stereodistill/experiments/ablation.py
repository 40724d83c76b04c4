"""The ablation runner: a grid of distillation variants × seeds, run resumably, summarised with CIs.

An ablation file names a base run config and what to vary::

    base: ../dsnet_plus.yaml          # a train/distill run config (path relative to this file)
    seeds: [0, 1, 2]
    steps: 300                        # the step budget of every cell
    fixed:                            # rows always run, whatever the axes
      no_kd: {terms: []}              # no distillation term: a supervised run
      paper: {base: ../dsnet_paper.yaml}
    axes:                             # the grid: the product of one choice per axis
      points:
        features: {terms: [feat_left, feat_right]}
        all: {}
      tau:
        t1: {distill.terms.kl.params.tau: 1.0}
    eval:
      synthetic: {dataset: sceneflow, root: data/synthetic, split: test}

A choice is a set of overrides with dotted keys (``optim.lr``, ``model.options.hourglass_channels``);
``distill.terms.NAME.KEY`` reaches into a term by its name, never by position; ``terms: [..]`` keeps
only those terms of the base (and drops the others from every stage); ``base`` swaps the base
config for that row. Every (cell, seed) runs in its own process and folder, ``cells/CELL/seedS``;
``result.json`` there marks it finished, so a killed ablation resumes without redoing finished
cells, and a cell that fails (non-finite loss, out of memory, a killed process) is recorded in
``error.json`` while the rest continue.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import multiprocessing as mp
import os
import statistics
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stereodistill.config import from_dict, load_yaml, to_dict
from stereodistill.errors import ConfigError
from stereodistill.fileio import write_text_atomic
from stereodistill.train.config import DatasetConfig, RunConfig

#: Two-sided 95 % Student-t quantiles by degrees of freedom (n − 1); 1.96 beyond the table.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
METRICS = ("epe", "d1", "bad1", "bad2", "bad3")


@dataclass
class AblationConfig:
    base: str
    eval: dict[str, DatasetConfig]
    name: str = "ablation"
    output: str | None = None  # default runs/ablations/<name>
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: int | None = None
    fixed: dict[str, dict[str, Any]] = field(default_factory=dict)
    axes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    parallel: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("ablation: 'seeds' must list at least one seed")
        if not self.eval:
            raise ConfigError("ablation: 'eval' must name at least one dataset")
        if self.parallel < 1:
            raise ConfigError(f"ablation: 'parallel' must be at least 1, got {self.parallel}")
        if not self.fixed and not self.axes:
            raise ConfigError("ablation: give 'fixed' rows, 'axes', or both")


@dataclass
class Cell:
    """One row of the ablation: a name and the run config it trains (seed applied per run)."""

    name: str
    config: dict[str, Any]
    distill: bool


def load_ablation(path: str | Path) -> tuple[AblationConfig, Path]:
    path = Path(path)
    return from_dict(AblationConfig, load_yaml(path), where=str(path)), path.parent


def _set(data: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set a dotted key; ``distill.terms.NAME...`` addresses a term by its name."""
    parts = key.split(".")
    node: Any = data
    for part in parts[:-1]:
        if isinstance(node, list):  # the term list: find the named term
            match = [t for t in node if isinstance(t, dict) and t.get("name") == part]
            if not match:
                names = ", ".join(str(t.get("name")) for t in node if isinstance(t, dict))
                raise ConfigError(f"{where}: {key}: no term named {part!r} (terms: {names})")
            node = match[0]
            continue
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict | list):
            raise ConfigError(f"{where}: {key}: {part!r} is not a mapping")
        node = child
    if isinstance(node, list):
        raise ConfigError(f"{where}: {key}: name a term after 'distill.terms'")
    node[parts[-1]] = copy.deepcopy(value)


def _keep_terms(data: dict[str, Any], keep: list[str], where: str) -> None:
    terms = data.get("distill", {}).get("terms", [])
    names = [t.get("name") for t in terms]
    unknown = sorted(set(keep) - set(names))
    if unknown:
        raise ConfigError(f"{where}: terms {', '.join(unknown)} are not in the base (it has: {', '.join(names)})")
    data.setdefault("distill", {})["terms"] = [t for t in terms if t.get("name") in keep]
    for stage in data.get("stages", []):
        if stage.get("terms") is not None:
            stage["terms"] = [t for t in stage["terms"] if t in keep]


def _term_names(data: Mapping[str, Any]) -> set[str]:
    return {t.get("name") for t in data.get("distill", {}).get("terms", []) if isinstance(t, dict)}


def apply_choice(
    base: dict[str, Any], choice: Mapping[str, Any], root: Path, where: str, known: set[str] | None = None
) -> dict[str, Any]:
    """A run config dict with one choice's overrides applied (``base`` and ``terms`` first).

    An override of a term that another axis of this cell removed (but that ``known``, the base's
    terms, has) does not apply to this cell and is skipped; any other unknown term is an error.
    """
    data = load_yaml(root / choice["base"]) if "base" in choice else copy.deepcopy(base)
    if "terms" in choice:
        _keep_terms(data, list(choice["terms"] or []), where)
    present = _term_names(data)
    for key, value in choice.items():
        if key in ("base", "terms"):
            continue
        parts = key.split(".")
        removed_here = parts[:2] == ["distill", "terms"] and len(parts) > 3 and parts[2] not in present
        if removed_here and known is not None and parts[2] in known:
            continue
        _set(data, key, value, where)
    return data


def expand(config: AblationConfig, root: Path) -> list[Cell]:
    """Fixed rows first, then the grid of the axes, each cell's config resolved and checked."""
    base = load_yaml(root / config.base)
    cells: list[tuple[str, list[tuple[str, Mapping[str, Any]]]]] = [
        (name, [(name, choice)]) for name, choice in config.fixed.items()
    ]
    if config.axes:
        for combo in itertools.product(*(list(axis.items()) for axis in config.axes.values())):
            name = ",".join(f"{axis}={label}" for axis, (label, _) in zip(config.axes, combo, strict=True))
            cells.append((name, list(combo)))
    resolved = []
    for name, choices in cells:
        data = copy.deepcopy(base)
        for label, choice in choices:
            data = apply_choice(data, choice, root, f"ablation cell {name!r} ({label})", _term_names(base))
        if config.steps is not None:
            data["steps"] = config.steps
        distill = bool(data.get("distill", {}).get("terms"))
        if not distill:
            data.pop("teacher", None)
            data.pop("stages", None)
        from_dict(RunConfig, data, where=f"ablation cell {name!r}")  # every cell is valid before any runs
        resolved.append(Cell(name, data, distill))
    names = [c.name for c in resolved]
    if len(set(names)) != len(names):
        raise ConfigError(f"ablation: duplicate cell names in {names}")
    return resolved


def cell_dir(out: Path, cell: str, seed: int) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_=.," else "_" for ch in cell)
    return out / "cells" / safe / f"seed{seed}"


def _run_one(
    cell: Cell, seed: int, folder: str, eval_sets: dict[str, dict[str, Any]], threads: int, device: str
) -> None:
    """Child process: train one (cell, seed), evaluate it, write result.json — or error.json."""
    import torch

    from stereodistill.runtime import configure_cpu_math

    configure_cpu_math()
    torch.set_num_threads(threads)
    out = Path(folder)
    started = time.perf_counter()
    try:
        import shutil

        from stereodistill.checkpoint import load_model
        from stereodistill.evaluate.evaluator import evaluate_model
        from stereodistill.runtime import resolve_device
        from stereodistill.train.data import build as build_dataset
        from stereodistill.train.trainer import Trainer

        shutil.rmtree(out / "run", ignore_errors=True)  # a run killed part-way starts again, cleanly
        data = {**cell.config, "seed": seed, "output": str(out / "run"), "name": f"{cell.name}/seed{seed}"}
        data["device"] = device
        config = from_dict(RunConfig, data)
        Trainer(config, distill=cell.distill).run()
        dev = resolve_device(device)
        model = load_model(out / "run" / "model", map_location=dev)
        datasets = {name: build_dataset(from_dict(DatasetConfig, spec)) for name, spec in eval_sets.items()}
        metrics = evaluate_model(model, datasets, dev)
        result = {"cell": cell.name, "seed": seed, "metrics": metrics, "seconds": time.perf_counter() - started}
        write_text_atomic(out / "result.json", json.dumps(result, indent=2) + "\n")
    except BaseException as exc:  # recorded, the ablation goes on
        message = f"{type(exc).__name__}: {exc}"
        error = {"cell": cell.name, "seed": seed, "error": message, "traceback": traceback.format_exc()[-4000:]}
        write_text_atomic(out / "error.json", json.dumps(error, indent=2) + "\n")


def run_cells(
    config: AblationConfig,
    cells: list[Cell],
    out: Path,
    log: Callable[[str], None] = print,
) -> None:
    """Run every unfinished (cell, seed), ``config.parallel`` processes at a time."""
    eval_sets = {name: to_dict(spec) for name, spec in config.eval.items()}
    for spec in eval_sets.values():
        if spec.get("root"):
            spec["root"] = str(Path(spec["root"]))
    todo = []
    # Seed-major: every cell gets its first seed before any gets its second, so a partial ablation
    # (stopped, or read with --report-only) already covers every row.
    for seed in config.seeds:
        for cell in cells:
            folder = cell_dir(out, cell.name, seed)
            if (folder / "result.json").is_file():
                continue
            (folder / "error.json").unlink(missing_ok=True)
            todo.append((cell, seed, folder))
    done = sum(len(config.seeds) for _ in cells) - len(todo)
    log(f"{len(cells)} cells × {len(config.seeds)} seeds: {done} finished before, {len(todo)} to run")
    threads = max(1, (os.cpu_count() or 1) // config.parallel)
    ctx = mp.get_context("spawn")
    running: list[tuple[Any, Cell, int, Path]] = []
    while todo or running:
        while todo and len(running) < config.parallel:
            cell, seed, folder = todo.pop(0)
            folder.mkdir(parents=True, exist_ok=True)
            process = ctx.Process(
                target=_run_one, args=(cell, seed, str(folder), eval_sets, threads, config.device), daemon=False
            )
            process.start()
            running.append((process, cell, seed, folder))
        for item in list(running):
            process, cell, seed, folder = item
            if process.is_alive():
                continue
            process.join()
            running.remove(item)
            if (folder / "result.json").is_file():
                log(f"  done   {cell.name} seed {seed}")
            else:
                if not (folder / "error.json").is_file():
                    error = {"cell": cell.name, "seed": seed, "error": f"process died (exit code {process.exitcode})"}
                    write_text_atomic(folder / "error.json", json.dumps(error, indent=2) + "\n")
                reason = json.loads((folder / "error.json").read_text())["error"]
                log(f"  FAILED {cell.name} seed {seed}: {reason}")
        time.sleep(0.2)


def ci95(values: list[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student t); NaN for one value."""
    if len(values) < 2:
        return math.nan
    return T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def summarise(config: AblationConfig, cells: list[Cell], out: Path) -> dict[str, Any]:
    """Per dataset, per cell: mean, std and 95 % CI over the seeds that finished; ranked by EPE."""
    results: dict[str, dict[int, Any]] = {c.name: {} for c in cells}
    failures = []
    for cell in cells:
        for seed in config.seeds:
            folder = cell_dir(out, cell.name, seed)
            if (folder / "result.json").is_file():
                results[cell.name][seed] = json.loads((folder / "result.json").read_text())["metrics"]
            elif (folder / "error.json").is_file():
                failures.append(json.loads((folder / "error.json").read_text()))
    tables = {}
    for dataset in config.eval:
        rows = []
        for cell in cells:
            runs = results[cell.name]
            row: dict[str, Any] = {"cell": cell.name, "n": len(runs), "seeds": sorted(runs)}
            for metric in METRICS:
                values = [runs[s][dataset][metric] for s in sorted(runs)]
                row[metric] = {
                    "mean": statistics.mean(values) if values else math.nan,
                    "std": statistics.stdev(values) if len(values) > 1 else math.nan,
                    "ci95": ci95(values),
                    "values": values,
                }
            rows.append(row)
        rows.sort(key=lambda r: (math.isnan(r["epe"]["mean"]), r["epe"]["mean"]))
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank if row["n"] else None
        tables[dataset] = rows
    return {"name": config.name, "seeds": config.seeds, "steps": config.steps, "tables": tables, "failures": failures}


def _cell_text(row: Mapping[str, Any], metric: str, percent: bool) -> str:
    stats = row[metric]
    if not row["n"]:
        return "failed"
    scale, unit = (100, " %") if percent else (1, "")
    text = f"{scale * stats['mean']:.3f}{unit}" if not percent else f"{scale * stats['mean']:.2f}{unit}"
    if row["n"] > 1:
        text += f" ± {scale * stats['std']:.3f}" if not percent else f" ± {scale * stats['std']:.2f}"
        text += f" [±{scale * stats['ci95']:.3f}]" if not percent else f" [±{scale * stats['ci95']:.2f}]"
    return text


def table_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["rank", "cell", "seeds", "EPE px", "D1", "bad-2"]
    body = [
        [
            str(row["rank"] or "-"),
            row["cell"],
            str(row["n"]),
            _cell_text(row, "epe", False),
            _cell_text(row, "d1", True),
            _cell_text(row, "bad2", True),
        ]
        for row in rows
    ]
    return header, body


def write_reports(summary: Mapping[str, Any], out: Path) -> None:
    """ablation.json, ablation.md and ablation.html (tables and EPE bars with 95 % CIs per dataset)."""
    from html import escape

    from stereodistill.report import htmlpage
    from stereodistill.report.svg import bar_chart

    note = (
        "mean ± sample std [± half-width of the 95 % confidence interval of the mean, Student t] over the "
        "seeds that finished; ranked by mean EPE."
    )
    md = [f"# Ablation: {summary['name']}", "", f"Seeds {summary['seeds']}, {summary['steps']} steps per cell; {note}"]
    html_parts = [f"<p>Seeds {escape(str(summary['seeds']))}, {summary['steps']} steps per cell; {escape(note)}</p>"]
    for dataset, rows in summary["tables"].items():
        header, body = table_rows(rows)
        md += ["", f"## {dataset}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in body]
        bars = [(row["cell"], row["epe"]["mean"], row["epe"]["ci95"]) for row in rows]
        html_parts += [
            f"<h2>{escape(dataset)}</h2>",
            htmlpage.table(header, body),
            bar_chart(bars, f"EPE on {dataset} (95 % CI)", "EPE px"),
        ]
    if summary["failures"]:
        md += ["", "## Failed runs", ""] + [
            f"- {f['cell']} seed {f['seed']}: {f['error']}" for f in summary["failures"]
        ]
        html_parts += [
            "<h2>Failed runs</h2>",
            htmlpage.table(
                ["cell", "seed", "error"], [[f["cell"], str(f["seed"]), f["error"]] for f in summary["failures"]]
            ),
        ]
    write_text_atomic(out / "ablation.json", json.dumps(summary, indent=2, allow_nan=True) + "\n")
    write_text_atomic(out / "ablation.md", "\n".join(md) + "\n")
    write_text_atomic(out / "ablation.html", htmlpage.page(f"Ablation: {summary['name']}", "".join(html_parts)))


def run_ablation(
    path: str | Path,
    out: str | Path | None = None,
    parallel: int | None = None,
    log: Callable[[str], None] = print,
    report_only: bool = False,
) -> dict[str, Any]:
    """Expand, run what is unfinished (unless ``report_only``), summarise and write the reports."""
    config, root = load_ablation(path)
    if parallel is not None:
        config.parallel = parallel
    for spec in config.eval.values():
        if spec.root is not None and not Path(spec.root).is_absolute():
            spec.root = str(root / spec.root)
    folder = Path(out or config.output or Path("runs") / "ablations" / config.name)
    cells = expand(config, root)
    if not report_only:
        run_cells(config, cells, folder, log)
    summary = summarise(config, cells, folder)
    write_reports(summary, folder)
    log(f"wrote {folder / 'ablation.md'}, ablation.json and ablation.html")
    return summary

"""The ablation runner: a grid of distillation variants × seeds, run resumably, summarised with CIs.

An ablation file names a base run config and what to vary::

    base: ../dsnet_plus.yaml          # a train/distill run config (path relative to this file)
    seeds: [0, 1, 2]
    steps: 300                        # the step budget of every cell (a row may set its own)
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
    baseline: no_kd                               # optional: EPE differences to it, paired by seed
    compare: [[paper, no_kd]]                     # optional: more paired differences, A minus B
    bench: {size: [256, 512], reference: paper}   # optional: each cell's latency, params and MACs
    overrides: {data.crop: [64, 128]}             # optional: applied to every cell
    budgets:                                      # optional: named scales, chosen with --budget NAME
      gpu: {steps: 20000, overrides: {data.crop: [256, 512]}, bench: {size: [544, 960], reference: paper}}

A choice is a set of overrides with dotted keys (``optim.lr``, ``model.options.hourglass_channels``);
``distill.terms.NAME.KEY`` reaches into a term by its name, never by position; ``terms: [..]`` keeps
only those terms of the base (and drops the others from every stage); ``base`` swaps the base
config for that row; ``teacher_cell: NAME`` distils from the model that cell trained with the same
seed. ``--budget`` takes a name from ``budgets`` (it replaces those top-level keys and adds its
``overrides``) or a number that scales every cell's steps. Running and resuming is
:mod:`~stereodistill.experiments.ablation_runs`; the tables are
:mod:`~stereodistill.experiments.ablation_report`.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stereodistill.config import check_steps, from_dict, load_yaml, set_dotted, to_dict
from stereodistill.errors import ConfigError, DataError
from stereodistill.experiments.ablation_report import summarise, write_reports
from stereodistill.experiments.ablation_runs import (
    Cell,
    bench_cells,
    cell_dir,
    collect_baselines,
    fingerprints,
    is_finished,
    run_baselines,
    run_cells,
    safe_name,
)
from stereodistill.fileio import nan_for_null, read_record
from stereodistill.train.config import DatasetConfig, RunConfig, absolute_stages, scale_run_steps
from stereodistill.train.run_folder import term_names

#: Keys of a choice that are not dotted overrides.
CHOICE_KEYS = ("base", "terms", "teacher_cell")


@dataclass
class BenchSpec:
    """Latency of every cell's network, measured after training (see ``evaluate.benchmark``)."""

    size: tuple[int, int] = (256, 512)  # input H, W
    repeats: int = 5  # timed forwards (median reported)
    warmup: int = 1  # untimed forwards first
    reference: str | None = None  # the cell whose speed-up over every other cell is reported

    def __post_init__(self) -> None:
        if min(self.size) < 1 or self.repeats < 1 or self.warmup < 0:
            raise ConfigError("ablation bench: 'size' and 'repeats' must be positive, 'warmup' not negative")


@dataclass
class AblationConfig:
    """An ablation file: a base run config, the rows and axes that vary it, seeds and evaluation."""

    base: str  # the run config every cell starts from (relative to this file)
    eval: dict[str, DatasetConfig]
    name: str = "ablation"  # default output runs/ablations/NAME
    output: str | None = None  # default runs/ablations/<name>
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # every cell runs with each
    steps: int | None = None  # step budget of every cell (a row may set its own)
    fixed: dict[str, dict[str, Any]] = field(default_factory=dict)  # rows: NAME: {overrides, terms, base, teacher_cell}
    axes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # the grid: AXIS: {CHOICE: {overrides}}
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted overrides applied to every cell
    bench: BenchSpec | None = None
    baseline: str | None = None  # the cell every row's EPE is compared with, seed by seed
    compare: list[tuple[str, str]] = field(default_factory=list)  # [A, B]: A's EPE minus B's, by seed
    baselines: list[str] = field(default_factory=list)  # classical networks (sgbm) evaluated beside the cells
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)  # named scales chosen with --budget NAME
    parallel: int = 1  # runs at a time
    device: str = "auto"  # auto, cpu, cuda (runs spread over the GPUs)
    step_scale: float = field(default=1.0, init=False)  # set by a numeric --budget, never by the file
    # A named budget's steps over the file's: rows with their own steps are scaled by it (None: no file steps).
    own_steps_scale: float | None = field(default=1.0, init=False)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("ablation: 'seeds' must list at least one seed")
        repeated = sorted({seed for seed in self.seeds if self.seeds.count(seed) > 1})
        if repeated:  # one run folder per (cell, seed): the same seed twice would train twice into it
            raise ConfigError(f"ablation: 'seeds' lists {', '.join(map(str, repeated))} more than once")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"ablation: 'steps' must be at least 1, got {self.steps}")
        empty = [axis for axis, choices in self.axes.items() if not choices]
        if empty:
            raise ConfigError(f"ablation: axis {empty[0]!r} has no choices (the grid would be empty)")
        if "steps" in self.overrides:
            raise ConfigError("ablation: set the steps of every cell with 'steps', not in 'overrides'")
        if not self.eval:
            raise ConfigError("ablation: 'eval' must name at least one dataset")
        for spec in self.eval.values():  # resolved here, so that the cells' fingerprints and records name it
            spec.split = spec.split or spec.evaluation_split
        if self.parallel < 1:
            raise ConfigError(f"ablation: 'parallel' must be at least 1, got {self.parallel}")
        if not self.fixed and not self.axes:
            raise ConfigError("ablation: give 'fixed' rows, 'axes', or both")
        from stereodistill.models.zoo import list_models, model_class

        for name in self.baselines:
            if name not in list_models() or model_class(name).trainable:
                classical = [n for n in list_models() if not model_class(n).trainable]
                raise ConfigError(
                    f"ablation: baseline {name!r} is not a classical network (one of: {', '.join(classical)})"
                )
        bad = sorted(set(CHOICE_KEYS) & set(self.overrides))
        if bad:
            raise ConfigError(f"ablation: 'overrides' apply to every row and cannot hold {', '.join(bad)}")


def load_ablation(path: str | Path, budget: str | None = None) -> tuple[AblationConfig, Path]:
    """The ablation file, with a ``--budget`` applied (a name from its ``budgets`` or a step factor)."""
    path = Path(path)
    data = load_yaml(path)
    _check_names(data, path)
    scale = 1.0
    own_steps_scale: float | None = 1.0
    if budget is not None:
        try:
            scale = float(budget)
        except ValueError:
            file_steps = data.get("steps")
            data = _with_budget(data, budget, path)
            if data.get("steps") != file_steps:
                check_steps(data.get("steps"), f"{path}: budget {budget!r}")
                own_steps_scale = data["steps"] / file_steps if isinstance(file_steps, int) and file_steps > 0 else None
    config = from_dict(AblationConfig, data, where=str(path))
    if not (math.isfinite(scale) and 0 < scale < MAX_STEP_SCALE):
        raise ConfigError(
            f"ablation: a numeric budget must be positive, finite and below {MAX_STEP_SCALE:g}, got {budget}"
        )
    config.step_scale = scale
    config.own_steps_scale = own_steps_scale
    return config, path.parent


def _check_names(data: dict[str, Any], path: Path) -> None:
    """Row and choice names are cell names: YAML reads ``on``/``off``/``yes``/``no`` (and numbers)
    as other types, which would name a cell ``kd=True`` and leave ``baseline: kd=on`` unfound."""
    axes = data.get("axes") if isinstance(data.get("axes"), dict) else {}
    sections = {"fixed": data.get("fixed"), **{f"axes.{axis}": choices for axis, choices in axes.items()}}
    for where, rows in sections.items():
        names = rows if isinstance(rows, dict) else {}  # other shapes are the schema's to refuse
        for name in names:
            if not isinstance(name, str):
                raise ConfigError(
                    f"{path}: {where}: the name {name!r} is not text (YAML reads on, off, yes, no and numbers as "
                    "other values): quote it, as 'on' or 'off'"
                )


#: A numeric ``--budget`` beyond this is a typo, not a plan (and beyond a float's range, a traceback).
MAX_STEP_SCALE = 1e6


def _with_budget(data: dict[str, Any], budget: str, path: Path) -> dict[str, Any]:
    """A named budget replaces the top-level keys it gives and adds its ``overrides`` to the file's."""
    budgets = data.get("budgets") or {}
    if budget not in budgets:
        names = ", ".join(budgets) or "none"
        raise ConfigError(f"{path}: no budget {budget!r} (named budgets: {names}; or give a number to scale the steps)")
    if not isinstance(budgets[budget], Mapping):
        raise ConfigError(f"{path}: budget {budget!r} must be a mapping of top-level keys, got {budgets[budget]!r}")
    chosen = dict(budgets[budget])
    fixed_keys = {"base", "name", "fixed", "axes", "budgets"} & set(chosen)
    if fixed_keys:
        raise ConfigError(f"{path}: budget {budget!r} may not change {', '.join(sorted(fixed_keys))}")
    overrides = {**(data.get("overrides") or {}), **(chosen.pop("overrides", None) or {})}
    return {**data, **chosen, "overrides": overrides}


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


def apply_choice(
    base: dict[str, Any], choice: Mapping[str, Any], root: Path, where: str, known: set[str] | None = None
) -> dict[str, Any]:
    """A run config dict with one choice's overrides applied (``base`` and ``terms`` first).

    An override of a term that another axis of this cell removed (but that ``known``, the base's
    terms, has) does not apply to this cell and is skipped; any other unknown term is an error.
    """
    data = load_yaml(root / choice["base"]) if "base" in choice else copy.deepcopy(base)
    before = set(term_names(data))
    if "terms" in choice:
        _keep_terms(data, list(choice["terms"] or []), where)
    present = set(term_names(data))
    for key, value in choice.items():
        if key in CHOICE_KEYS:
            continue
        parts = key.split(".")
        removed_here = parts[:2] == ["distill", "terms"] and len(parts) > 3 and parts[2] not in present
        if removed_here and "terms" in choice and parts[2] in before:  # one choice both drops and sets it
            raise ConfigError(f"{where}: {key} sets term {parts[2]!r}, which its own 'terms' leaves out")
        if removed_here and known is not None and parts[2] in known:
            continue
        set_dotted(data, key, value, where)
    return data


def same_runs(cells: list[Cell]) -> list[list[str]]:
    """Groups of cells whose configs and teacher cells are the same: rows that differ only by
    overrides that do not apply to them."""
    groups: dict[str, list[str]] = {}
    for cell in cells:
        key = json.dumps([cell.config, cell.teacher_cell], sort_keys=True, default=str)
        groups.setdefault(key, []).append(cell.name)
    return [names for names in groups.values() if len(names) > 1]


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
    names = [name for name, _ in cells]
    if len(set(names)) != len(names):
        raise ConfigError(f"ablation: duplicate cell names in {names}")
    folders: dict[str, str] = {}
    for name in names:  # two names one folder: their runs would overwrite each other
        other = folders.setdefault(safe_name(name), name)
        if other != name:
            raise ConfigError(f"ablation: cells {other!r} and {name!r} would share one folder; rename one")
    resolved = []
    known = set(term_names(base))  # the base's terms: an override of one another axis removed is skipped
    for name, choices in cells:
        data = copy.deepcopy(base)
        teacher_cell = None
        for label, choice in choices:
            where = f"ablation cell {name!r} ({label})"
            data = apply_choice(data, choice, root, where, known)
            teacher_cell = choice.get("teacher_cell", teacher_cell)
        if config.overrides:
            varied = sorted(set(config.overrides) & {key for _, choice in choices for key in choice})
            if varied:
                raise ConfigError(f"ablation cell {name!r}: 'overrides' (or the budget's) also set {', '.join(varied)}")
            data = apply_choice(data, config.overrides, root, f"ablation cell {name!r} (overrides)", known)
        distill = bool(data.get("distill", {}).get("terms"))
        if not distill:  # no terms: no teacher, and one stage, as long as the base's stages unless a row says
            stages = absolute_stages(data)
            if stages and data.get("steps") is None:
                data["steps"] = sum(stage["steps"] for stage in stages)
            data.pop("teacher", None)
            data.pop("stages", None)
        own_steps = any("steps" in choice for _, choice in choices)
        scale = config.step_scale
        if own_steps:  # the row's own budget, scaled as the file's is by a named budget
            if config.own_steps_scale is None:
                raise ConfigError(f"ablation cell {name!r} sets its own steps: give the file 'steps' to scale them by")
            scale *= config.own_steps_scale
        if absolute_stages(data):  # the cell's stages set its length: the budget scales them
            if config.steps is not None and not own_steps:
                raise ConfigError(
                    f"ablation cell {name!r}: its stages are given in absolute steps, which set its length, so the "
                    f"file's steps ({config.steps}) cannot; give the stages as fractions of steps, or drop the "
                    "file's steps"
                )
            scale_run_steps(data, None, scale, f"ablation cell {name!r}")  # a row's own steps must be their sum
        else:
            steps = data.get("steps") if own_steps or config.steps is None else config.steps
            if steps is not None:
                check_steps(steps, f"ablation cell {name!r}")
                scale_run_steps(data, steps, scale, f"ablation cell {name!r}")
        if teacher_cell is not None:
            if teacher_cell not in names or teacher_cell == name:
                raise ConfigError(f"ablation cell {name!r}: teacher_cell {teacher_cell!r} is not another cell")
            if not distill:
                raise ConfigError(f"ablation cell {name!r}: teacher_cell given, but the cell has no terms")
            data["teacher"] = {"checkpoint": f"<model of cell {teacher_cell}>"}  # set per seed when run
        from_dict(RunConfig, data, where=f"ablation cell {name!r}")  # every cell is valid before any runs
        resolved.append(Cell(name, data, distill, teacher_cell))
    _check_teachers(resolved)
    if config.baseline is not None and config.baseline not in names:
        raise ConfigError(f"ablation: baseline {config.baseline!r} is not a cell ({', '.join(names)})")
    for pair in config.compare:
        unknown = [cell for cell in pair if cell not in names]
        if unknown:
            missing = ", ".join(map(repr, unknown))
            raise ConfigError(f"ablation compare {list(pair)}: {missing} is not a cell ({', '.join(names)})")
    if config.bench and config.bench.reference is not None and config.bench.reference not in names:
        raise ConfigError(f"ablation bench: reference {config.bench.reference!r} is not a cell ({', '.join(names)})")
    return resolved


def _check_teachers(cells: list[Cell]) -> None:
    """No cell may (through others) be its own teacher."""
    teacher_of = {c.name: c.teacher_cell for c in cells}
    for cell in cells:
        seen = {cell.name}
        node = cell.teacher_cell
        while node is not None:
            if node in seen:
                raise ConfigError(f"ablation: the teacher cells of {cell.name!r} form a cycle")
            seen.add(node)
            node = teacher_of[node]


def output_folder(config: AblationConfig, budget: str | None) -> Path:
    """``runs/ablations/NAME`` (or the file's ``output``), suffixed by the budget when one is chosen."""
    folder = Path(config.output or Path("runs") / "ablations" / config.name)
    if budget is None:
        return folder
    if folder.name in ("", "..") or ".." in folder.parts:  # "." has no name to suffix, ".." the wrong one
        folder = folder.resolve()
    return folder.with_name(f"{folder.name}-budget-{safe_name(budget, keep='-_.')}")


def collect(
    config: AblationConfig, cells: list[Cell], out: Path, prints: Mapping[tuple[str, int], str]
) -> tuple[dict, list[dict[str, Any]], int]:
    """Finished results (``cell → seed → metrics``), recorded failures, and how many results and
    failures were left out because they ran under another config (``prints``: the current fingerprints)."""
    results: dict[str, dict[int, Any]] = {c.name: {} for c in cells}
    failures = []
    stale = 0
    for cell in cells:
        for seed in config.seeds:
            folder = cell_dir(out, cell.name, seed)
            if is_finished(folder, prints[cell.name, seed]):
                path = folder / "result.json"
                metrics = read_record(path, "delete it to run that cell again").get("metrics")
                if not isinstance(metrics, dict):
                    raise DataError(path, "is damaged: it holds no metrics; delete it to run that cell again")
                results[cell.name][seed] = nan_for_null(metrics)  # a diverged run's EPE was written as null
            elif (folder / "result.json").is_file():
                stale += 1
            elif (folder / "error.json").is_file():
                error = read_record(folder / "error.json", "delete it to run that cell again")
                if error.get("fingerprint", prints[cell.name, seed]) == prints[cell.name, seed]:
                    failures.append(error)
                else:  # a failure under another config says nothing about this one
                    stale += 1
    return results, failures, stale


#: What the report reads of bench.json.
BENCH_KEYS = ("size", "device", "threads", "repeats", "warmup", "reference", "cells")
BENCH_ROW_KEYS = ("params", "gmacs", "latency_ms")  # of each row that did not fail


def check_eval_sets(specs: Mapping[str, DatasetConfig], max_disp: int) -> None:
    """Every evaluation set built and checked before any cell trains (each cell reads them only after
    its training): a missing root, a set without ground truth or pairs whose views differ in size
    would otherwise fail every cell, each after its whole run."""
    from stereodistill.train.config import IN_MEMORY
    from stereodistill.train.data import build, check_before_training

    for name, spec in specs.items():
        if spec.dataset not in IN_MEMORY:  # generated or shipped with ground truth, one size a pair
            check_before_training(build(spec, max_disp=max_disp), f"eval.{name}", truth=True, headers=True)


def run_ablation(
    path: str | Path,
    out: str | Path | None = None,
    parallel: int | None = None,
    log: Callable[[str], None] = print,
    report_only: bool = False,
    budget: str | None = None,
) -> dict[str, Any]:
    """Expand, run what is unfinished (unless ``report_only``), benchmark, summarise, write the reports."""
    config, root = load_ablation(path, budget)
    if parallel is not None:
        config.parallel = parallel
    cells = expand(config, root)
    for names in same_runs(cells):
        log(
            f"note: cells {', '.join(map(repr, names))} come out as the same run (for instance, an override of a "
            "term that another axis leaves out does not apply), trained once for each"
        )
    # Fingerprinted as written in the file, so that moving the tree does not invalidate results.
    prints = fingerprints(cells, config.seeds, {name: to_dict(spec) for name, spec in config.eval.items()})
    for spec in config.eval.values():
        if spec.root is not None and not Path(spec.root).is_absolute():
            spec.root = str(root / spec.root)
    eval_sets = {name: to_dict(spec) for name, spec in config.eval.items()}
    folder = Path(out) if out else output_folder(config, budget)
    baseline_disp = int(cells[0].config["model"]["max_disp"]) if cells else 192
    bench = None
    if report_only and not folder.is_dir():  # a mistyped --out would get a report of nothing run
        raise ConfigError(f"--report-only: {folder} does not exist: no run of this ablation to summarise there")
    if not report_only:
        check_eval_sets(config.eval, baseline_disp)
        if config.baselines:  # one that cannot run (sgbm without OpenCV) is said before any cell trains
            from stereodistill.checkpoint import load_network

            for name in config.baselines:
                load_network(name, "cpu", max_disp=baseline_disp).prepare()
        run_cells(
            cells, config.seeds, eval_sets, folder, prints, parallel=config.parallel, device=config.device, log=log
        )
        if config.baselines:
            run_baselines(config.baselines, baseline_disp, eval_sets, folder, device=config.device, log=log)
        if config.bench is not None:
            log(f"benchmarking each cell's network at {config.bench.size[0]}x{config.bench.size[1]}, one at a time")
            spec = config.bench
            bench = bench_cells(
                cells,
                config.seeds,
                folder,
                size=spec.size,
                repeats=spec.repeats,
                warmup=spec.warmup,
                device=config.device,
                reference=spec.reference,
                baselines=(config.baselines, baseline_disp) if config.baselines else None,
                log=log,
            )
    elif config.bench is not None and (folder / "bench.json").is_file():
        bench = read_record(folder / "bench.json", "delete it to benchmark the cells again")
        missing = [key for key in BENCH_KEYS if key not in bench]
        rows = bench.get("cells") if isinstance(bench.get("cells"), dict) else {}
        missing += [
            f"cells.{name}.{key}"
            for name, row in rows.items()
            for key in BENCH_ROW_KEYS
            if not (isinstance(row, dict) and ("error" in row or key in row))
        ]
        if missing:
            raise DataError(folder / "bench.json", f"is damaged: no {', '.join(missing)}; delete it to benchmark again")
    results, failures, stale = collect(config, cells, folder, prints)

    def _timed_now(name: str, row: Any) -> bool:
        """A bench row of a baseline, or of the network this config trained for the cell."""
        if name in config.baselines:
            return True
        timed = row.get("fingerprint") if isinstance(row, dict) else None
        return bool(results.get(name)) and (timed is None or timed == prints.get((name, row.get("seed"))))

    # A classical network gives the same output on every seed: one evaluation stands for each.
    for name, metrics in collect_baselines(config.baselines, baseline_disp, eval_sets, folder).items():
        results[name] = dict.fromkeys(config.seeds, metrics)
    if stale:
        log(f"left out {stale} results or failures of another config; rerun without --report-only to redo them")
    if bench is not None and isinstance(bench.get("cells"), dict):  # a stale cell's speed is its old network's
        bench = {**bench, "cells": {name: row for name, row in bench["cells"].items() if _timed_now(name, row)}}
    steps = sorted({c.config.get("steps") for c in cells}, key=lambda v: (v is None, v or 0))
    steps_text = steps[0] if len(steps) == 1 else steps
    summary = summarise(
        config.name,
        config.seeds,
        steps_text,
        list(config.eval),
        results,
        failures,
        bench,
        config.baseline,
        config.compare,
        classical=config.baselines,
    )
    write_reports(summary, folder)
    log(f"wrote {folder / 'ablation.md'}, ablation.json and ablation.html")
    return summary

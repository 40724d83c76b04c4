"""An ablation's summary: per dataset and cell, mean, std and the 95 % CI over seeds, ranked by EPE;
with the speed of each cell's network when the ablation benchmarks them (``bench.json``).

Written as ``ablation.json`` (everything), ``ablation.md`` and ``ablation.html`` (tables and EPE bars
with their confidence intervals).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stereodistill.fileio import write_json, write_text_atomic
from stereodistill.report.htmlpage import figures

METRICS = ("epe", "d1", "bad1", "bad2", "bad3")


def ci95(values: list[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student t with n − 1 degrees of
    freedom, exact for every n); NaN for one value."""
    from scipy.stats import t

    if len(values) < 2:
        return math.nan
    return float(t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


def _stats(values: list[float]) -> dict[str, Any]:
    """Mean, std and CI over the finite values; ``values`` keeps every seed's, ``nonfinite`` counts
    the others (a network that output NaN or inf somewhere has an infinite EPE)."""
    finite = [v for v in values if math.isfinite(v)]
    return {
        "mean": statistics.mean(finite) if finite else math.nan,
        "std": statistics.stdev(finite) if len(finite) > 1 else math.nan,
        "ci95": ci95(finite),
        "values": values,
        "nonfinite": len(values) - len(finite),
    }


def summarise(
    name: str,
    seeds: Sequence[int],
    steps: int | list[int] | None,
    datasets: Sequence[str],
    results: Mapping[str, Mapping[int, Mapping[str, Any]]],
    failures: list[dict[str, Any]],
    bench: Mapping[str, Any] | None = None,
    baseline: str | None = None,
    compare: Sequence[Sequence[str]] = (),
    classical: Sequence[str] = (),
) -> dict[str, Any]:
    """``results[cell][seed]`` → metrics per dataset; a table per dataset ranked by mean EPE.

    Each ``compare`` pair (A, B) gets A's EPE minus B's over the seeds both finished, per dataset
    (a distilled network against itself from scratch, a student against a rival).

    With a ``baseline`` cell, each row also carries its EPE minus the baseline's, seed by seed (runs
    of one seed share their data order, and their initial weights where the network is the same, so
    the paired difference has a far tighter interval than the two means). With ``bench``
    (``bench.json``), each row carries its network's size and latency, and the speed-up of the
    bench's reference cell over it (its latency divided by the reference's). ``classical``: rows of
    classical networks (no training; one evaluation stands for every seed).
    """
    speed = dict((bench or {}).get("cells", {}))
    reference = (bench or {}).get("reference")
    ref_ms = speed.get(reference, {}).get("latency_ms") if reference else None
    failed_seeds: dict[str, list[int]] = {}
    for failure in failures:
        failed_seeds.setdefault(failure["cell"], []).append(failure["seed"])
    tables = {}
    for dataset in datasets:
        rows = []
        for cell, runs in results.items():
            row: dict[str, Any] = {"cell": cell, "n": len(runs), "seeds": sorted(runs)}
            row["failed_seeds"] = sorted(failed_seeds.get(cell, []))
            for metric in METRICS:
                row[metric] = _stats([runs[s][dataset][metric] for s in sorted(runs)])
            if baseline is not None:
                row["epe_vs_baseline"] = _paired(results, cell, baseline, dataset)["epe_difference"]
            if cell in speed:
                row["bench"] = dict(speed[cell])
                if ref_ms and "latency_ms" in speed[cell]:
                    row["bench"]["speedup_of_reference"] = speed[cell]["latency_ms"] / ref_ms
            rows.append(row)
        # A cell that diverged on some seed ranks after every cell that never did, whatever its other seeds.
        rows.sort(key=lambda r: (math.isnan(r["epe"]["mean"]), r["epe"]["nonfinite"] > 0, r["epe"]["mean"]))
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank if math.isfinite(row["epe"]["mean"]) else None
        tables[dataset] = rows
    summary = {"name": name, "seeds": list(seeds), "steps": steps, "tables": tables, "failures": failures}
    if compare:
        summary["comparisons"] = {ds: [_paired(results, a, b, ds) for a, b in compare] for ds in datasets}
    if baseline is not None:
        summary["baseline"] = baseline
    if classical:
        summary["classical"] = list(classical)
    if bench:
        summary["bench"] = {k: v for k, v in bench.items() if k != "cells"}
        rows = bench.get("cells", {}).items()
        # Timed while the machine was busy: marked in the tables.
        summary["bench"]["noisy"] = sorted(name for name, row in rows if isinstance(row, dict) and row.get("noisy"))
    return summary


def _paired(results: Mapping[str, Mapping[int, Mapping[str, Any]]], a: str, b: str, dataset: str) -> dict[str, Any]:
    """A's EPE minus B's, seed by seed, over the seeds both finished; how many of them A wins."""
    runs_a, runs_b = results.get(a, {}), results.get(b, {})
    seeds = [s for s in sorted(runs_a) if s in runs_b]
    differences = [runs_a[s][dataset]["epe"] - runs_b[s][dataset]["epe"] for s in seeds]
    wins = sum(d < 0 for d in differences)
    return {"a": a, "b": b, "seeds": seeds, "epe_difference": _stats(differences), "a_better": wins}


def comparison_rows(comparisons: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and text rows of one dataset's paired comparisons."""
    header = ["A − B", "seeds", "EPE difference px, paired [95 % CI]", "A better on"]
    body = []
    for row in comparisons:
        stats, n = row["epe_difference"], len(row["seeds"])
        if not n or not math.isfinite(stats["mean"]):
            body.append([f"{row['a']} − {row['b']}", str(n), "-", "-"])
            continue
        text = f"{stats['mean']:+.3f}" + (f" [±{stats['ci95']:.3f}]" if n - stats["nonfinite"] > 1 else "")
        if stats["nonfinite"]:  # the mean is over the finite differences only: say how many are not
            text += f" ({stats['nonfinite']} of {n} non-finite, left out of the mean)"
        body.append([f"{row['a']} − {row['b']}", str(n), text, f"{row['a_better']} of {n} seeds"])
    return header, body


def _cell_text(row: Mapping[str, Any], metric: str, percent: bool) -> str:
    stats = row[metric]
    if not row["n"]:  # no result: a recorded failure, or a run that has not finished (yet)
        return "failed" if row.get("failed_seeds") else "not run"
    bad = f" ({stats['nonfinite']} non-finite)" if stats["nonfinite"] else ""
    if not math.isfinite(stats["mean"]):
        return "non-finite"
    scale, unit, digits = (100, " %", 2) if percent else (1, "", 3)
    text = f"{scale * stats['mean']:.{digits}f}{unit}"
    if row["n"] - stats["nonfinite"] > 1:
        text += f" ± {scale * stats['std']:.{digits}f} [±{scale * stats['ci95']:.{digits}f}]"
    return text + bad


def _delta_text(row: Mapping[str, Any]) -> str:
    stats = row["epe_vs_baseline"]
    if not math.isfinite(stats["mean"]):
        return "-"
    pairs = len(stats["values"]) - stats["nonfinite"]
    text = f"{stats['mean']:+.3f}" + (f" [±{stats['ci95']:.3f}]" if pairs > 1 else "")
    return text + (f" ({pairs} seeds)" if pairs != row["n"] else "")


def _bench_text(row: Mapping[str, Any]) -> list[str]:
    bench = row.get("bench")
    if not bench:
        return ["-"] * 4
    if "error" in bench:
        return ["-", "-", "failed", "-"]
    speedup = bench.get("speedup_of_reference")
    return [
        f"{bench['params'] / 1e6:.2f}",
        figures(bench["gmacs"]),
        figures(bench["latency_ms"]) + (" (noisy)" if bench.get("noisy") else ""),
        f"{speedup:.2f}×" if speedup is not None else "-",
    ]


def table_rows(
    rows: list[dict[str, Any]], reference: str | None = None, baseline: str | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and text rows of one dataset's table (a paired-difference column with a baseline;
    speed columns when the rows carry ``bench``)."""
    header = ["rank", "cell", "seeds", "EPE px", "D1", "bad-2"]
    if baseline is not None:
        header.append(f"EPE − {baseline}, paired")
    with_bench = any("bench" in row for row in rows)
    if with_bench:
        header += ["params M", "GMACs", "latency ms", f"{reference} speed-up" if reference else "speed-up"]
    body = []
    for row in rows:
        line = [
            str(row["rank"] or "-"),
            row["cell"],
            str(row["n"]),
            _cell_text(row, "epe", False),
            _cell_text(row, "d1", True),
            _cell_text(row, "bad2", True),
        ]
        if baseline is not None:
            line.append(_delta_text(row))
        body.append(line + _bench_text(row) if with_bench else line)
    return header, body


def _bench_note(bench: Mapping[str, Any]) -> str:
    height, width = bench["size"]
    machine = bench.get("machine", {})
    cpu = f"{machine.get('processor', 'CPU')}, {bench['threads']} threads"
    where = (machine.get("cuda") or cpu) if bench["device"] == "cuda" else cpu
    note = (
        f"Speed: {bench['device']} ({where}), {height}×{width}, batch 1, median of {bench['repeats']} forwards "
        f"after {bench['warmup']} warm-up, one process per network, after all training had finished."
    )
    if bench.get("reference"):
        note += f" Speed-up: how many times faster {bench['reference']} is than the row's network."
    if bench.get("noisy"):
        note += (
            " (noisy): that network's forwards varied by more than a quarter of their median, so the machine "
            "was probably busy while it was timed."
        )
    return note


def _timed(row: Mapping[str, Any]) -> bool:
    return "latency_ms" in row.get("bench", {}) and row["n"] > 0


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    """Markdown table lines; a ``|`` inside a cell (a cell name may hold one) is escaped."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in body)]


def write_reports(summary: Mapping[str, Any], out: Path) -> None:
    """ablation.json, ablation.md and ablation.html (tables and EPE bars with 95 % CIs per dataset)."""
    from html import escape

    from stereodistill.report import htmlpage
    from stereodistill.report.svg import PALETTE, bar_chart, scatter_chart

    note = (
        "mean ± sample std [± half-width of the 95 % confidence interval of the mean, Student t] over the "
        "seeds that finished; ranked by mean EPE."
    )
    head = f"Seeds {summary['seeds']}, {summary['steps']} steps per cell; {note}"
    bench = summary.get("bench")
    reference = bench.get("reference") if bench else None
    baseline = summary.get("baseline")
    if baseline is not None:
        head += (
            f" EPE − {baseline}: the mean over seeds of the row's EPE minus {baseline}'s of the same seed "
            "(same data order, and the same initial weights where the network is the same) "
            "[± 95 % CI half-width]; negative is better."
        )
    if summary.get("classical"):
        head += (
            f" {', '.join(summary['classical'])}: a classical method, not trained; its one evaluation stands for "
            "every seed (its std is 0 by construction)."
        )
    cells = [row["cell"] for row in next(iter(summary["tables"].values()), [])]
    colours = {cell: PALETTE[i % len(PALETTE)] for i, cell in enumerate(sorted(cells))}  # one per cell
    md = [f"# Ablation: {summary['name']}", "", head]
    html_parts = [f"<p>{escape(head)}</p>"]
    if bench:
        md += ["", _bench_note(bench)]
        html_parts.append(f"<p>{escape(_bench_note(bench))}</p>")
    for dataset, rows in summary["tables"].items():
        header, body = table_rows(rows, reference, baseline)
        md += ["", f"## {dataset}", "", *_md_table(header, body)]
        bars = [(row["cell"], row["epe"]["mean"], row["epe"]["ci95"]) for row in rows]
        missing = {row["cell"]: _cell_text(row, "epe", False) for row in rows}
        html_parts += [
            f"<h2>{escape(dataset)}</h2>",
            htmlpage.table(header, body),
            bar_chart(bars, f"EPE on {dataset} (95 % CI)", "EPE px", colours=colours, missing=missing),
        ]
        comparisons = summary.get("comparisons", {}).get(dataset)
        if comparisons:
            header, body = comparison_rows(comparisons)
            md += ["", f"Paired comparisons on {dataset} (negative: A has the lower EPE):", ""]
            md += _md_table(header, body)
            html_parts += [f"<h3>Paired comparisons on {escape(dataset)}</h3>", htmlpage.table(header, body)]
        timed = [(r["cell"], r["bench"]["latency_ms"], r["epe"]["mean"], r["epe"]["ci95"]) for r in rows if _timed(r)]
        if timed:
            title = f"Speed and accuracy on {dataset}"
            html_parts.append(scatter_chart(timed, title, "latency ms", "EPE px (95 % CI)", colours=colours))
    failures = summary["failures"]
    if failures:
        md += ["", "## Failed runs", ""] + [f"- {f['cell']} seed {f['seed']}: {f['error']}" for f in failures]
        html_parts += [
            "<h2>Failed runs</h2>",
            htmlpage.table(["cell", "seed", "error"], [[f["cell"], str(f["seed"]), f["error"]] for f in failures]),
        ]
    write_json(out / "ablation.json", summary)
    write_text_atomic(out / "ablation.md", "\n".join(md) + "\n")
    write_text_atomic(out / "ablation.html", htmlpage.page(f"Ablation: {summary['name']}", "".join(html_parts)))

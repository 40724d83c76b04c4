"""The quickstart's report: ``report.json`` (for programs), ``report.md`` and ``report.html`` (for people).

The HTML page holds the comparison table, the training curves of the three runs (read back from
their ``scalars.csv``) and, for a few test pairs, the left image, the ground truth, each model's
disparity on one shared colour scale, and each model's error map on another.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from stereodistill.data.formats import write_image
from stereodistill.fileio import write_json, write_text_atomic
from stereodistill.report import htmlpage
from stereodistill.report.colormap import ERROR_ANCHORS, colorbar, colorize
from stereodistill.report.htmlpage import epe_cell, has_figure, percent_cell
from stereodistill.report.svg import line_chart, scatter_chart, smooth

#: Errors at or above this many pixels share the top colour of the error maps.
ERROR_VMAX = 5.0
#: Width in pixels of the colour bars under the maps.
COLORBAR_WIDTH = 480
LABELS = {"teacher": "teacher", "student_scratch": "student (scratch)", "student_distilled": "student (distilled)"}


def read_scalars(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """A run's ``scalars.csv`` as name → [(step, value)]; a missing file gives nothing."""
    series: dict[str, list[tuple[float, float]]] = {}
    path = run_dir / "scalars.csv"
    if not path.is_file():
        return series
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                series.setdefault(row["name"], []).append((float(row["step"]), float(row["value"])))
            except (KeyError, ValueError):
                continue
    return series


def write_images(
    folder: Path,
    labels: Sequence[str],
    samples: Sequence[Mapping[str, Any]],
    predictions: Mapping[str, Sequence[np.ndarray]],
    max_disp: float,
) -> list[tuple[str, list[str]]]:
    """PNG files per sample: left, ground truth, each model's disparity, each model's error map.

    Returns rows of (sample label, file names relative to the report) in :func:`image_columns` order.
    """
    rows = []
    for index, (label, sample) in enumerate(zip(labels, samples, strict=True)):
        gt = sample["disp"].numpy()
        valid = sample["valid"].numpy().astype(bool)
        files = {
            "left": sample["left"].numpy().transpose(1, 2, 0),
            "gt": colorize(gt, vmax=max_disp, invalid=~valid),
        }
        for role, maps in predictions.items():
            files[role] = colorize(maps[index], vmax=max_disp)
        for role, maps in predictions.items():
            error = np.abs(maps[index] - gt)
            files[f"{role}_error"] = colorize(error, vmax=ERROR_VMAX, invalid=~valid, anchors=ERROR_ANCHORS)
        paths = []
        for key, image in files.items():
            relative = f"images/{index:02d}_{key}.png"
            write_image(folder / f"{index:02d}_{key}.png", image)
            paths.append(relative)
        rows.append((label, paths))
    write_image(folder / "colorbar_disparity.png", colorbar(COLORBAR_WIDTH, max_disp))
    write_image(folder / "colorbar_error.png", colorbar(COLORBAR_WIDTH, ERROR_VMAX, anchors=ERROR_ANCHORS))
    return rows


def image_columns(roles: Sequence[str]) -> list[str]:
    return [
        "left image",
        "ground truth",
        *(LABELS.get(r, r) for r in roles),
        *(f"error: {LABELS.get(r, r)}" for r in roles),
    ]


def model_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Size and speed of each model (one table in both the Markdown and the HTML report)."""
    header = ["model", "arch", "params", "GMACs", "latency ms", "speed-up vs teacher", "training s"]
    teacher_ms = report["models"]["teacher"]["latency_ms"]
    rows = [
        [
            LABELS.get(role, role),
            entry["arch"],
            f"{entry['params']:,}",
            f"{entry['gmacs']:.2f}",
            f"{entry['latency_ms']:.1f}",
            f"{teacher_ms / entry['latency_ms']:.2f}x",
            f"{entry['train_seconds']:.0f}",
        ]
        for role, entry in report["models"].items()
    ]
    return header, rows


def d1_is_bad3(report: Mapping[str, Any], dataset: str) -> bool:
    """D1 (error > 3 px and > 5 %) equals bad-3 when every disparity is below 60 px (5 % < 3 px)."""
    entries = [*report["models"].values(), *report.get("baselines", {}).values()]
    metrics = [entry["metrics"][dataset] for entry in entries]
    return all(m["d1"] == m["bad3"] for m in metrics)


def metric_rows(report: Mapping[str, Any], dataset: str) -> tuple[list[str], list[list[str]]]:
    """Accuracy of each model on one dataset (D1 left out where it equals bad-3 for every model)."""
    with_d1 = not d1_is_bad3(report, dataset)
    header = ["model", "EPE px", *(["D1"] if with_d1 else []), "bad-1", "bad-2", "bad-3"]
    rows = []
    entries = [(LABELS.get(r, r), e) for r, e in report["models"].items()]
    entries += [(f"{name} (classical baseline)", e) for name, e in report.get("baselines", {}).items()]
    for label, entry in entries:
        m = entry["metrics"][dataset]
        d1 = [percent_cell(m["d1"])] if with_d1 else []
        pct = [percent_cell(m[key]) for key in ("bad1", "bad2", "bad3")]
        rows.append([label, epe_cell(m["epe"]), *d1, *pct])
    return header, rows


def metrics_note(report: Mapping[str, Any]) -> str:
    """What the metric tables show, and why D1 may be missing."""
    note = "Metrics are pooled over valid pixels (EPE in px; D1, bad-τ as shares)."
    same = [name for name in datasets_of(report) if d1_is_bad3(report, name)]
    if same:
        note += (
            f" D1 is not shown for {', '.join(same)}: there every ground-truth disparity is below 60 px, where "
            "5 % is less than 3 px, so D1 equals bad-3 by construction."
        )
    if not report.get("baselines"):
        note += (
            " SGBM, the classical baseline, is missing: OpenCV was not installed when this report was made "
            "(pip install 'stereodistill[sgbm]')."
        )
    return note


def datasets_of(report: Mapping[str, Any]) -> list[str]:
    return list(next(iter(report["models"].values()))["metrics"])


def verdict(report: Mapping[str, Any]) -> str:
    """One sentence on what distillation did, with the seed."""
    gain = report["distillation"]
    steps = report["steps"]["student_distilled"]
    one_seed = (
        f" This is one seed ({report['seed']}), and one seed can mislead: the repository's docs/results.md "
        "has the same comparison over three seeds."
    )
    scratch, distilled = gain["epe_scratch"], gain["epe_distilled"]
    if not all(has_figure(epe) for epe in (scratch, distilled)):
        return (
            f"Distillation cannot be judged this time: the EPE on the synthetic test split is "
            f"{_epe_phrase(distilled)} distilled against {_epe_phrase(scratch)} from scratch; a network that "
            "predicts NaN or infinity anywhere has an infinite EPE (it diverged: see its scalars.csv)." + one_seed
        )
    if gain["distilled_beats_scratch"]:
        return (
            f"Distillation lowered the student's EPE on the synthetic test split from {gain['epe_scratch']:.3f} px "
            f"to {gain['epe_distilled']:.3f} px ({gain['epe_reduction']:.3f} px, "
            f"{100 * gain['epe_reduction_rel']:.1f} % lower) for the same {steps} steps." + one_seed
        )
    return (
        f"Distillation did NOT help this time: the distilled student's EPE on the synthetic test split is "
        f"{gain['epe_distilled']:.3f} px against {gain['epe_scratch']:.3f} px from scratch, for the same {steps} "
        "steps." + one_seed
    )


def _epe_phrase(value: Any) -> str:
    """An EPE for a sentence: px when finite, else what it is (JSON writes an infinite one as null)."""
    return f"{value:.3f} px" if has_figure(value) else "not finite"


def speed_line(report: Mapping[str, Any]) -> str:
    models = report["models"]
    bench = report["benchmark"]
    ratio = models["teacher"]["latency_ms"] / models["student_distilled"]["latency_ms"]
    where = bench["device"] + (f", {bench['threads']} threads" if bench["device"] == "cpu" else "")
    return (
        f"Latency: median of {bench['repeats']} eval forwards after a warm-up, batch 1, "
        f"{bench['size'][0]}x{bench['size'][1]}, {where}; the student runs {ratio:.2f}x faster than the teacher."
    )


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def motorcycle_note(report: Mapping[str, Any]) -> str:
    """How the real pair was evaluated, and how much of its ground truth the metrics cover."""
    moto = report.get("motorcycle")
    coverage = next(iter(report["models"].values()))["metrics"].get("middlebury-motorcycle", {}).get("ground_truth")
    if not moto or not coverage:
        return ""
    height, width = moto["size"]
    factor = moto["reduced_by"]
    where = "at full size" if factor == 1 else f"at 1/{factor} size ({height}×{width} HxW, ground truth scaled alike)"
    return (
        f"Motorcycle (real, zero-shot) is evaluated {where}, where its disparities lie within the models' range of "
        f"{report['max_disp']:g} px: the metrics count {coverage['with_gt'] - coverage['left_out']:,} of its "
        f"{coverage['with_gt']:,} pixels with ground truth."
    )


def markdown(report: Mapping[str, Any]) -> str:
    lines = ["# stereodistill quickstart", "", verdict(report), "", speed_line(report), ""]
    lines += _md_table(*model_rows(report))
    for dataset in datasets_of(report):
        lines += ["", f"**{dataset}**", ""]
        lines += _md_table(*metric_rows(report, dataset))
    timing = report["timing_s"]
    lines += [
        "",
        metrics_note(report) + " " + motorcycle_note(report),
        "",
        f"Steps: {', '.join(f'{LABELS[r]} {n}' for r, n in report['steps'].items())}. "
        f"Wall time: {timing['total']:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in timing.items() if k != "total")
        + ").",
        f"Machine: {report['machine'].get('processor', 'CPU')} ({report['machine'].get('cpu_threads', '?')} threads), "
        f"{report['machine']['platform']}, torch {report['machine']['torch']}.",
        "",
        "Figures: report.html (training curves, disparity and error maps).",
        "",
    ]
    return "\n".join(lines)


def curves(run_dirs: Mapping[str, Path]) -> str:
    scalars = {role: read_scalars(path) for role, path in run_dirs.items()}
    supervised = {LABELS.get(r, r): smooth(s.get("supervised", [])) for r, s in scalars.items()}
    val = {LABELS.get(r, r): s.get("val/epe", []) for r, s in scalars.items()}
    return (
        '<div class="charts">'
        + line_chart(supervised, "training loss (supervised part, moving average)", "step", "loss", log_y=True)
        + line_chart(val, "validation EPE (synthetic test split)", "step", "EPE px", markers=True)
        + "</div>"
    )


def speed_plane(report: Mapping[str, Any]) -> str:
    """Latency against synthetic EPE, one point per model."""
    points = [
        (LABELS.get(role, role), entry["latency_ms"], entry["metrics"]["synthetic"]["epe"], math.nan)
        for role, entry in report["models"].items()
        if "synthetic" in entry["metrics"]
    ]
    height, width = report["benchmark"]["size"]
    return scatter_chart(points, f"synthetic EPE against latency at {height}x{width}", "latency ms", "EPE px")


def html_page(report: Mapping[str, Any], images: Sequence[tuple[str, list[str]]], run_dirs: Mapping[str, Path]) -> str:
    cls = "good" if report["distillation"]["distilled_beats_scratch"] else "bad"
    columns = image_columns(list(report["models"]))
    split = 2 + len(report["models"])  # left, ground truth and the disparities; then the error maps
    body = [
        f'<p class="{cls}">{escape(verdict(report))}</p>',
        f"<p>{escape(speed_line(report))}</p>",
        htmlpage.table(*model_rows(report)),
        *(f"<h2>{escape(name)}</h2>" + htmlpage.table(*metric_rows(report, name)) for name in datasets_of(report)),
        f'<p class="note">{escape(metrics_note(report))} {escape(motorcycle_note(report))}</p>',
        "<h2>Speed and accuracy</h2>",
        speed_plane(report),
        "<h2>Training curves</h2>",
        curves(run_dirs),
        "<h2>Disparity maps</h2>",
        f'<p class="note">One colour scale for every map: 0 to {report["max_disp"]:g} px, blue far, red near; '
        "black: no ground truth. Click a map for its full size.</p>",
        htmlpage.image_grid(columns[:split], [(label, paths[:split]) for label, paths in images]),
        '<img class="bar" src="images/colorbar_disparity.png" alt="disparity colour scale">',
        "<h2>Error maps</h2>",
        f'<p class="note">|d̂ − d| on a colour map of its own: light for no error, dark red for {ERROR_VMAX:g} px '
        "or more; black: no ground truth.</p>",
        htmlpage.image_grid(columns[split:], [(label, paths[split:]) for label, paths in images]),
        '<img class="bar" src="images/colorbar_error.png" alt="error colour scale">',
        "<h2>Run</h2>",
        f'<p class="note">Seed {report["seed"]}; steps {escape(json.dumps(report["steps"]))}; wall time '
        f"{report['timing_s']['total']:.0f} s; {escape(report['machine']['platform'])}, torch "
        f"{escape(report['machine']['torch'])}. Machine-readable: <code>report.json</code>.</p>",
    ]
    return htmlpage.page("stereodistill quickstart", "".join(body))


def write_report(
    out: Path, report: Mapping[str, Any], images: Sequence[tuple[str, list[str]]], run_dirs: Mapping[str, Path]
) -> None:
    write_json(out / "report.json", report)
    write_text_atomic(out / "report.md", markdown(report))
    write_text_atomic(out / "report.html", html_page(report, images, run_dirs))

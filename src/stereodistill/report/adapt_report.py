"""The page of ``stereodistill adapt``: what the teacher taught and what the student learnt.

For a few of the user's pairs: the left image, the teacher's labels (black where its filters or the
photometric gate left the pixel out, so the pixel was dropped or kept the student's own disparity),
and the student's disparity before and after, all on one colour scale; then per pair the labelled
share and the teacher's share and, when the list had ground truth, the metrics before and after
(scored only, never trained on).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stereodistill.data.formats import write_image
from stereodistill.fileio import write_text_atomic
from stereodistill.report import htmlpage
from stereodistill.report.colormap import colorize, with_colorbar

COLUMNS = ("left", "teacher's labels (others: black)", "student before", "student after")
METRICS = ("epe", "bad1", "bad2", "bad3", "d1")


@dataclass
class AdaptExample:
    """One pair as the report shows it (H×W×3 image, H×W maps)."""

    name: str
    left: np.ndarray
    label: np.ndarray
    kept: np.ndarray  # labelled pixels
    taught: np.ndarray  # the pixels whose label is the teacher's
    before: np.ndarray
    after: np.ndarray


def _metric_rows(scores: Mapping[str, Mapping[str, float | None]]) -> list[list[str]]:
    """EPE in px, the others as percentages; a metric with no figure (no pixel to score, or a network that
    predicted NaN or infinity) is n/a."""

    def cell(metric: str, value: float | None) -> str:
        return htmlpage.epe_cell(value) if metric == "epe" else htmlpage.percent_cell(value)

    return [[when, *(cell(m, scores[when].get(m)) for m in METRICS)] for when in ("before", "after")]


def write_adapt_report(out: Path, examples: Sequence[AdaptExample], report: Mapping[str, Any], max_disp: float) -> Path:
    """Write ``out/report.html`` and its images (``out/images/``); returns the page's path."""
    rows = []
    for index, example in enumerate(examples):
        maps = {
            "left": example.left,
            "label": with_colorbar(
                colorize(example.label, vmax=max_disp, invalid=~(example.kept & example.taught)), max_disp
            ),
            "before": with_colorbar(colorize(example.before, vmax=max_disp), max_disp),
            "after": with_colorbar(colorize(example.after, vmax=max_disp), max_disp),
        }
        paths = []
        for key, image in maps.items():
            write_image(out / "images" / f"{index:02d}_{key}.png", image)
            paths.append(f"images/{index:02d}_{key}.png")
        rows.append((example.name, paths))
    kept = report["kept"]
    mean_kept = sum(k["kept"] for k in kept) / max(len(kept), 1)
    mean_taught = sum(k["teacher"] for k in kept) / max(len(kept), 1)
    body = [
        f"<p>{len(kept)} pairs; {100 * mean_kept:.1f} % of the pixels are labels on average, "
        f"{100 * mean_taught:.1f} % the teacher's (the rest keep the student's own disparity). "
        f"Disparity in pixels, 0 to {max_disp:g}.</p>",
        htmlpage.image_grid(COLUMNS, rows),
    ]
    if "ground_truth" in report:
        body += [
            "<h2>On the list's ground truth (never used for training)</h2>",
            htmlpage.table(
                ["student", "EPE px", "bad-1", "bad-2", "bad-3", "D1"], _metric_rows(report["ground_truth"])
            ),
        ]
        if report.get("ground_truth_warning"):  # most of the truth may lie beyond the student's range
            body.append(f"<p><strong>{html.escape(report['ground_truth_warning'])}</strong></p>")
    body += [
        "<h2>Labelled pixels per pair</h2>",
        htmlpage.table(
            ["pair", "labelled", "the teacher's"],
            [[k["pair"], f"{100 * k['kept']:.1f} %", f"{100 * k['teacher']:.1f} %"] for k in kept],
        ),
    ]
    page = out / "report.html"
    write_text_atomic(page, htmlpage.page("stereodistill adapt", "".join(body)))
    return page

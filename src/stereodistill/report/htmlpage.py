"""A self-contained HTML page for reports: one style sheet, tables, inline SVG and image grids.

Pages are static files beside their images (relative links), readable offline and in any browser.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from html import escape
from typing import Any


def figures(value: float) -> str:
    """A measurement to three significant figures in positional notation, whole numbers from 100 on:
    a small network at a small size reads 0.0275 GMACs and 0.310 ms, not 0.0 and 0, nor 2.75e-05."""
    import numpy as np

    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 99.95:
        return f"{value:.0f}"
    return np.format_float_positional(value, precision=3, unique=False, fractional=False, trim="k").rstrip(".")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.note { color: #555; font-size: 0.9em; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.grid { display: grid; gap: 4px; align-items: start; font-size: 0.85em; }
.grid img { width: 100%; image-rendering: pixelated; display: block; }
.grid .cap { text-align: center; color: #444; }
.grid .row { text-align: right; color: #444; padding-right: 0.4em; white-space: nowrap; align-self: center; }
img.bar { display: block; max-width: 480px; margin: 0.3em 0 1em auto; }
.good { color: #06702a; font-weight: 600; } .bad { color: #a40000; font-weight: 600; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


def has_figure(value: Any) -> bool:
    """Whether a metric can be written as a number: JSON writes a non-finite one as null, so None,
    NaN and infinity all have no figure."""
    return isinstance(value, numbers.Real) and math.isfinite(value)


def epe_cell(value: Any) -> str:
    """An EPE for a table cell (its column says px); ``n/a`` where it has no figure."""
    return f"{value:.3f}" if has_figure(value) else "n/a"


def percent_cell(value: Any) -> str:
    """A share (bad-τ, D1) as a percentage for a table cell; ``n/a`` where it has no figure."""
    return f"{100 * value:.2f} %" if has_figure(value) else "n/a"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table; cells are escaped text."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image_grid(columns: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    """Rows of images under column captions; each row is (label, image paths relative to the page).
    Each image links to itself at full size; the row labels take the width they need."""
    n = len(columns)
    cells = ['<div class="cap"></div>', *(f'<div class="cap">{escape(c)}</div>' for c in columns)]
    for label, images in rows:
        cells.append(f'<div class="row">{escape(label)}</div>')
        cells.extend(
            f'<a href="{escape(src)}"><img src="{escape(src)}" alt="{escape(label)}: {escape(col)}"></a>'
            for col, src in zip(columns, images, strict=True)
        )
    return f'<div class="grid" style="grid-template-columns: max-content repeat({n}, 1fr)">{"".join(cells)}</div>'


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )

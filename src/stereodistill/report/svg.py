"""Small SVG charts for the HTML reports, written directly: no plotting library to install.

Three kinds cover what the reports show: line charts (training curves, one line per run),
horizontal bars with error bars (a metric per ablation cell, mean ± a half-width) and labelled
points with error bars (a speed/accuracy plane).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

#: Distinguishable colours (Okabe–Ito), in the order series are drawn.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _log_ticks(low: float, high: float) -> list[float]:
    """Ticks of a log axis spanning log10 values [low, high], as log10 values: 1-2-5 per decade,
    only the powers of ten when that gives enough, more steps when the span is short."""
    decades = range(math.floor(low), math.ceil(high) + 1)
    for mantissas in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        ticks = [math.log10(m) + k for k in decades for m in mantissas if low <= math.log10(m) + k <= high]
        if len(ticks) >= 3:
            return ticks
    return ticks or [low]


Box = tuple[float, float, float, float]  # left, top, width, height of the plot area


def _frame(
    parts: list[str],
    points: Sequence[tuple[float, float]],
    box: Box,
    labels: tuple[str, str],
    log_x: bool = False,
    log_y: bool = False,
    pad: float = 0.05,
) -> tuple[Callable[[float], float], Callable[[float], float]]:
    """Draw the plot area, ticks and axis labels for ``points`` (``pad``: the margin above and below,
    a fraction of the y span); return the x and y scales."""
    left, top, plot_w, plot_h = box
    tx = math.log10 if log_x else float
    ty = math.log10 if log_y else float
    x0, x1 = min(tx(p[0]) for p in points), max(tx(p[0]) for p in points)
    y0, y1 = min(ty(p[1]) for p in points), max(ty(p[1]) for p in points)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad_x = (x1 - x0) * (0.08 if log_x else 0.0)
    pad_y = (y1 - y0) * pad
    x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y

    def sx(x: float) -> float:
        return left + (tx(x) - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + (1 - (ty(y) - y0) / (y1 - y0)) * plot_h

    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    for tick in _log_ticks(x0, x1) if log_x else _ticks(x0, x1):
        x = left + (tick - x0) / (x1 - x0) * plot_w
        label = f"{10**tick:.6g}" if log_x else _fmt(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 4}" stroke="#666"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{label}</text>')
    for tick in _log_ticks(y0, y1) if log_y else _ticks(y0, y1):
        y = top + (1 - (tick - y0) / (y1 - y0)) * plot_h
        label = f"{10**tick:.6g}" if log_y else _fmt(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    x_label, y_label = labels
    x_text = f"{x_label} (log)" if log_x else x_label
    parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 34}" text-anchor="middle">{escape(x_text)}</text>')
    parts.append(
        f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2})">{escape(y_label)}{" (log)" if log_y else ""}</text>'
    )
    return sx, sy


def _open(width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
    ]


def smooth(values: Sequence[tuple[float, float]], window: int = 5) -> list[tuple[float, float]]:
    """Trailing moving average of the y values (single-batch losses are noisy)."""
    out = []
    for i, (x, _) in enumerate(values):
        chunk = [y for _, y in values[max(0, i - window + 1) : i + 1]]
        out.append((x, sum(chunk) / len(chunk)))
    return out


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    title: str,
    x_label: str,
    y_label: str,
    width: int = 560,
    height: int = 300,
    log_y: bool = False,
    markers: bool = False,
) -> str:
    """An SVG line chart, one line per named series of (x, y) points; non-finite points are skipped.

    The legend sits below the plot, so it never hides a line; ``markers`` marks every point (for
    sparse measurements such as validation).
    """
    points = {
        name: [(x, y) for x, y in values if math.isfinite(x) and math.isfinite(y) and (y > 0 or not log_y)]
        for name, values in series.items()
    }
    every = [p for values in points.values() for p in values]
    left, right, top, bottom = 56, 16, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    height += 16 * ((len(points) + 1) // 2)  # legend rows
    parts = _open(width, height, title)
    if not every:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    sx, sy = _frame(parts, every, (left, top, plot_w, plot_h), (x_label, y_label), log_y=log_y)
    for i, (name, values) in enumerate(points.items()):
        colour = PALETTE[i % len(PALETTE)]
        if values:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{path}"/>')
            if markers:
                parts.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in values)
        lx = left + (i % 2) * plot_w / 2
        ly = top + plot_h + bottom + 12 + 16 * (i // 2)
        parts.append(
            f'<line x1="{lx:.1f}" y1="{ly - 4}" x2="{lx + 16:.1f}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{lx + 20:.1f}" y="{ly}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    rows: Sequence[tuple[str, float, float]],
    title: str,
    value_label: str,
    width: int = 560,
    colours: Mapping[str, str] | None = None,
    missing: Mapping[str, str] | None = None,
) -> str:
    """Horizontal bars (label, value, error half-width) with error bars; a non-finite value gets no
    bar but the word ``missing`` gives for its label ("failed", "not run"; "no value" by default).
    ``colours`` (label → colour) keeps a label's colour the same across charts."""
    left, right, top, row_h = 170, 24, 28, 22
    height = top + row_h * len(rows) + 36
    plot_w = width - left - right
    finite = [(v, e if math.isfinite(e) else 0.0) for _, v, e in rows if math.isfinite(v)]
    high = max((v + e for v, e in finite), default=1.0) or 1.0
    parts = _open(width, height, title)

    def sx(v: float) -> float:
        return left + v / high * plot_w

    for tick in _ticks(0.0, high):
        x = sx(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - 32}" stroke="#eee"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 20}" text-anchor="middle">{_fmt(tick)}</text>')
    for i, (label, value, err) in enumerate(rows):
        y = top + i * row_h
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        if not math.isfinite(value):
            word = escape((missing or {}).get(label, "no value"))
            parts.append(f'<text x="{left + 4}" y="{y + 15}" fill="#a00">{word}</text>')
            continue
        colour = (colours or {}).get(label, PALETTE[i % len(PALETTE)])
        parts.append(
            f'<rect x="{left}" y="{y + 4}" width="{sx(value) - left:.1f}" height="{row_h - 8}" '
            f'fill="{colour}" opacity="0.8"/>'
        )
        if math.isfinite(err) and err > 0:
            a, b, mid = sx(max(value - err, 0.0)), sx(value + err), y + row_h / 2
            parts.append(f'<line x1="{a:.1f}" y1="{mid}" x2="{b:.1f}" y2="{mid}" stroke="#000"/>')
            for end in (a, b):
                parts.append(f'<line x1="{end:.1f}" y1="{mid - 4}" x2="{end:.1f}" y2="{mid + 4}" stroke="#000"/>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle">{escape(value_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def scatter_chart(
    points: Sequence[tuple[str, float, float, float]],
    title: str,
    x_label: str,
    y_label: str,
    width: int = 560,
    height: int = 320,
    log_x: bool = True,
    colours: Mapping[str, str] | None = None,
) -> str:
    """Labelled points (label, x, y, y error half-width) with vertical error bars: a speed/accuracy
    plane (latency on a log axis against EPE); points with a non-finite coordinate are left out.
    ``colours`` (label → colour) keeps a label's colour the same across charts."""
    shown = [(n, x, y, e) for n, x, y, e in points if math.isfinite(x) and math.isfinite(y) and (x > 0 or not log_x)]
    left, right, top, bottom = 56, 16, 28, 44
    box = (left, top, width - left - right, height - top - bottom)
    parts = _open(width, height, title)
    if not shown:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    span = [(x, y + (e if math.isfinite(e) else 0.0)) for _, x, y, e in shown]
    span += [(x, y - (e if math.isfinite(e) else 0.0)) for _, x, y, e in shown]
    sx, sy = _frame(parts, span, box, (x_label, y_label), log_x=log_x, pad=0.12)  # room for the labels
    placed: list[tuple[float, float]] = []  # label anchors so far: nearby points' labels are stacked
    for i, (name, x, y, err) in enumerate(shown):
        colour = (colours or {}).get(name, PALETTE[i % len(PALETTE)])
        cx, cy = sx(x), sy(y)
        if math.isfinite(err) and err > 0:
            a, b = sy(y - err), sy(y + err)
            parts.append(f'<line x1="{cx:.1f}" y1="{a:.1f}" x2="{cx:.1f}" y2="{b:.1f}" stroke="{colour}"/>')
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colour}"/>')
        anchor, dx = ("end", -7) if cx > left + box[2] * 0.75 else ("start", 7)
        ly = cy - 5
        while any(abs(px - cx) < 90 and abs(py - ly) < 12 for px, py in placed):
            ly += 13
        placed.append((cx, ly))
        label = f'<text x="{cx + dx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" fill="{colour}">{escape(name)}</text>'
        parts.append(label)
    parts.append("</svg>")
    return "".join(parts)

"""The speed/accuracy front of an ablation with a bench section, as a stand-alone SVG (docs/results.md).

python scripts/front_svg.py ABLATION.json DATASET OUT.svg [NAME=LATENCY_MS:EPE ...]

Extra NAME=LATENCY_MS:EPE points (e.g. networks measured by another ablation of the same protocol)
are drawn beside the ablation's cells, without an interval.

Latency (log axis) against mean EPE with its 95 % confidence interval, one point per cell: the same
chart as the ablation's report page, written on its own so that documentation can show it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from stereodistill.fileio import write_text_atomic
from stereodistill.report.svg import PALETTE, scatter_chart


def front(summary: dict, dataset: str, extra: list[tuple[str, float, float]] = ()) -> str:
    rows = summary["tables"][dataset]
    colours = {row["cell"]: PALETTE[i % len(PALETTE)] for i, row in enumerate(sorted(rows, key=lambda r: r["cell"]))}
    points = [
        (row["cell"], row["bench"]["latency_ms"], row["epe"]["mean"], row["epe"].get("ci95", math.nan))
        for row in rows
        if "latency_ms" in row.get("bench", {})
    ]
    for i, (name, latency, epe) in enumerate(extra):
        colours.setdefault(name, PALETTE[(len(rows) + i) % len(PALETTE)])
        points.append((name, latency, epe, math.nan))
    bench = summary.get("bench", {})
    size = "x".join(str(v) for v in bench.get("size", []))
    title = f"{summary['name']}: {dataset} EPE against latency at {size} ({bench.get('device', '')})"
    return scatter_chart(points, title, "latency ms", "EPE px (95 % CI)", width=720, height=420, colours=colours)


def point(text: str) -> tuple[str, float, float]:
    name, _, values = text.partition("=")
    latency, _, epe = values.partition(":")
    try:
        return name, float(latency), float(epe)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=LATENCY_MS:EPE") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ablation", type=Path, help="the ablation's ablation.json")
    parser.add_argument("dataset", help="which of its tables, e.g. synthetic")
    parser.add_argument("out", type=Path, help="the SVG to write")
    parser.add_argument("extra", nargs="*", type=point, help="more points, NAME=LATENCY_MS:EPE")
    args = parser.parse_args()
    summary = json.loads(args.ablation.read_text(encoding="utf-8"))
    write_text_atomic(args.out, front(summary, args.dataset, args.extra) + "\n")


if __name__ == "__main__":
    main()

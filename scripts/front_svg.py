"""The speed/accuracy front of an ablation with a bench section, as a stand-alone SVG (docs/results.md).

python scripts/front_svg.py ABLATION.json DATASET OUT.svg [NAME=LATENCY_MS:EPE ...]

Extra NAME=LATENCY_MS:EPE points (e.g. networks measured by another ablation of the same protocol)
are drawn beside the ablation's cells, without an interval.

Latency (log axis) against mean EPE with its 95 % confidence interval, one point per cell: the same
chart as the ablation's report page, written on its own so that documentation can show it.
"""

from __future__ import annotations

import json
import math
import sys
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


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    summary = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    extra = []
    for item in argv[3:]:
        name, _, values = item.partition("=")
        latency, _, epe = values.partition(":")
        extra.append((name, float(latency), float(epe)))
    write_text_atomic(argv[2], front(summary, argv[1], extra) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

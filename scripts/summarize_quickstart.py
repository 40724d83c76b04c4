"""Mean ± sample standard deviation over seeds of quickstart reports, as Markdown (docs/results.md).

python scripts/summarize_quickstart.py runs/quickstart/report.json runs/quickstart-seed*/report.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ROLES = {"teacher": "teacher", "student_scratch": "student from scratch", "student_distilled": "student distilled"}


def mean_std(values: list[float], percent: bool = False) -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * std:.2f} %" if percent else f"{mean:.3f} ± {std:.3f}"


def main(paths: list[str]) -> str:
    reports = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    seeds = ", ".join(str(r["seed"]) for r in reports)
    lines = []
    for dataset in ("synthetic", "middlebury-motorcycle"):
        lines += [f"**{dataset}** (mean ± sample std over seeds {seeds})", ""]
        lines += ["| model | EPE px | D1 | bad-1 | bad-2 | bad-3 |", "|---|---|---|---|---|---|"]
        for role, label in ROLES.items():
            archs = ", ".join(sorted({r["models"][role]["arch"] for r in reports}))
            keys = ("epe", "d1", "bad1", "bad2", "bad3")
            values = {k: [r["models"][role]["metrics"][dataset][k] for r in reports] for k in keys}
            cells = [mean_std(values["epe"])] + [mean_std(values[k], True) for k in ("d1", "bad1", "bad2", "bad3")]
            lines.append(f"| {label} (`{archs}`) | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Per seed, synthetic EPE (px):", ""]
    lines += ["| seed | teacher | scratch | distilled | distilled − scratch |", "|---|---|---|---|---|"]
    for r in reports:
        gain = r["distillation"]
        teacher = r["models"]["teacher"]["metrics"]["synthetic"]["epe"]
        lines.append(
            f"| {r['seed']} | {teacher:.3f} | {gain['epe_scratch']:.3f} | {gain['epe_distilled']:.3f} | "
            f"{-gain['epe_reduction']:+.3f} ({-100 * gain['epe_reduction_rel']:+.1f} %) |"
        )
    reduction = [r["distillation"]["epe_reduction"] for r in reports]
    relative = [r["distillation"]["epe_reduction_rel"] for r in reports]
    wins = sum(r["distillation"]["distilled_beats_scratch"] for r in reports)
    lines += [
        "",
        f"Synthetic EPE reduction by distillation: {mean_std(reduction)} px ({mean_std(relative, True)}); "
        f"the distilled student beat the scratch one in {wins} of {len(reports)} seeds.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="quickstart report.json files, one per seed")
    print(main(parser.parse_args().reports))

"""The scripts under benchmarks/ and scripts/ still run against the package they measure.

They sit outside the package, so nothing else imports them: a change of an internal signature
(``Trainer.compute_losses`` once gained a return value) broke one silently until a user ran it.
Each runs here at a tiny size, one thread, in its own process as a user would run it; the figures
are not checked (targets live in the benchmarks, not in timed tests), only that each one is made.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUNS = {
    "benchmarks/bench_distill_step.py": (
        ["--size", "32x64", "--max-disp", "16", "--batch", "1", "--repeats", "1", "--threads", "1"],
        "overhead (c) / (a + b)",
    ),
    "benchmarks/bench_cost_volume.py": (["--size", "8x16", "--max-disp", "4", "--threads", "1", "--repeats", "1"], "×"),
    "benchmarks/bench_block_match.py": (
        ["--size", "16x32", "--max-disp", "8", "--window", "3", "--threads", "1", "--repeats", "1"],
        "all (block match and polish)",
    ),
    "benchmarks/bench_lean_knobs.py": (
        [
            *("--knob", "fine=0,2", "--with", "census=3", "--size", "32x64"),
            *("--max-disp", "16", "--threads", "1", "--rounds", "1"),
        ],
        "lean, census=3 at 32x64",
    ),
    "benchmarks/bench_side_by_side.py": (
        ["--arch", "lean-xs", "--crop", "32x64", "--max-disp", "16", "--batch", "1", "--steps", "2", "--threads", "1"],
        "the steps per second",
    ),
    "benchmarks/bench_render_then_step.py": (
        [
            *("--arch", "lean-xs", "--crop", "32x64", "--batch", "1", "--max-disp", "16", "--size", "32x64"),
            *("--render", "1", "--rounds", "1", "--threads", "1"),
        ],
        "step after rendering 1 pairs",
    ),
    "benchmarks/bench_synthetic.py": (
        ["--size", "32x64", "--max-disp", "16", "--pairs", "2", "--threads", "1"],
        "pairs/s",
    ),
    "benchmarks/motorcycle_resolution_floor.py": ([], "| 1/4 | bilinear |"),
    "benchmarks/census_polish.py": (["sgbm", "--threads", "1"], "| sgbm |"),
    "benchmarks/error_regions.py": (["sgbm", "--threads", "1"], "| from errors > 3 px |"),
}
NEED_RUNS = [
    "benchmarks/adapt_heldout.py",
    "benchmarks/sweep_quickstart.py",
    "scripts/front_svg.py",
    "scripts/summarize_quickstart.py",
]


def run(script: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_every_script_is_covered():
    found = {str(p.relative_to(ROOT)) for folder in ("benchmarks", "scripts") for p in (ROOT / folder).glob("*.py")}
    assert found == {*RUNS, *NEED_RUNS}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_a_benchmark_runs_at_a_tiny_size(script):
    args, expected = RUNS[script]
    if "sgbm" in args:
        pytest.importorskip("cv2", reason="sgbm needs the sgbm extra (part of the dev install)")
    done = run(script, args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout


@pytest.mark.parametrize("script", NEED_RUNS)
def test_a_script_that_reads_finished_runs_explains_itself(script):
    done = run(script, ["--help"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:")


def test_error_regions_splits_a_fine_stage_into_its_hypotheses(tmp_path):
    """``--stages`` adds the stage's input and its block match as rows; an untrained stage all but
    ignores the block match (weight e⁻⁸ per candidate), so its output has its input's EPE."""
    from stereodistill.checkpoint import save_model
    from stereodistill.models import build_model

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = build_model("lean-xs", max_disp=32, fine=2, fine_block=3)
    checkpoint = save_model(tmp_path / "model", model.eval())
    done = run("benchmarks/error_regions.py", [str(checkpoint), "--stages", "--threads", "1"])
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout.splitlines()[3:6]  # the first table's rows
    rows = {line.split(" | ")[0].removeprefix("| "): float(line.split(" | ")[1]) for line in table}
    assert set(rows) == {str(checkpoint), f"{checkpoint} · estimate", f"{checkpoint} · block match"}
    assert rows[str(checkpoint)] == pytest.approx(rows[f"{checkpoint} · estimate"], abs=0.01)
    assert abs(rows[f"{checkpoint} · block match"] - rows[str(checkpoint)]) > 0.1

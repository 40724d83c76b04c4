"""``stereodistill quickstart``: the first job a new user runs (``make quickstart``).

For now (until the model zoo and training engine land) it makes the embedded synthetic dataset,
reads it back through the SceneFlow reader, and evaluates the classical block-matching reference
on it and zero-shot on the real Middlebury Motorcycle pair: an end-to-end smoke run of the data,
reader and metric paths.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from stereodistill.cli.args import positive_int, size
from stereodistill.fileio import write_text_atomic


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "quickstart",
        help="generate data, evaluate, report (the main job)",
        description="Generate the synthetic dataset and run an evaluation smoke run; writes runs/quickstart/.",
    )
    parser.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    parser.add_argument("--pairs", type=positive_int, default=20, help="synthetic test pairs (default 20)")
    parser.add_argument("--size", type=size, default=(128, 256), help="synthetic HxW (default 128x256)")
    parser.add_argument("--max-disp", type=positive_int, default=48, help="maximum disparity (default 48)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(handler=run)


def _progress(label: str):
    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total:
            end = "\n" if done == total else ""
            elapsed = time.perf_counter() - start
            print(f"\r  {label}: {done}/{total} ({elapsed:.1f} s)", end=end, file=sys.stderr, flush=True)

    return report


def run(args: argparse.Namespace) -> int:
    import torch

    from stereodistill.data.datasets import build_dataset
    from stereodistill.data.motorcycle import NAME as MOTORCYCLE
    from stereodistill.data.motorcycle import write_motorcycle
    from stereodistill.data.synthetic import SynthConfig, write_synthetic
    from stereodistill.evaluate.block_matching import block_matching
    from stereodistill.evaluate.evaluator import evaluate_dataset
    from stereodistill.evaluate.metrics import format_table

    out = Path(args.out)
    height, width = args.size
    torch.manual_seed(args.seed)
    print(f"[1/3] synthetic data: {args.pairs} test pairs {height}x{width}, max disparity {args.max_disp}")
    config = SynthConfig(height=height, width=width, max_disp=args.max_disp)
    write_synthetic(
        out / "data" / "synthetic", args.pairs, config, seed=args.seed, split="test", progress=_progress("synth")
    )
    synthetic = build_dataset("sceneflow", out / "data" / "synthetic", split="test", max_disp=args.max_disp)
    motorcycle_csv = write_motorcycle(out / "data" / MOTORCYCLE)
    motorcycle = build_dataset("pairs", motorcycle_csv, max_disp=64)

    print("[2/3] evaluating block matching (learning-free reference)")
    results = {}
    for name, dataset, max_disp in (("synthetic", synthetic, args.max_disp), (MOTORCYCLE, motorcycle, 64)):
        acc = evaluate_dataset(
            lambda left, right, d=max_disp: block_matching(left, right, d), dataset, progress=_progress(name)
        )
        results[name] = {"pooled": acc.pooled(), "per_image_mean": acc.per_image_mean(), "n_images": len(dataset)}

    print("[3/3] report (pooled over all valid pixels)")
    print(format_table((f"block-matching/{name}", r["pooled"]) for name, r in results.items()))
    report = {"seed": args.seed, "models": {"block_matching": {"arch": "block-matching", "metrics": results}}}
    write_text_atomic(out / "report.json", json.dumps(report, indent=2))
    print(f"wrote {out / 'report.json'}")
    return 0

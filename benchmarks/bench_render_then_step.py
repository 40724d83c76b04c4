"""Does rendering synthetic pairs slow the training step that follows it?

Usage: ``python benchmarks/bench_render_then_step.py [--arch lean-l] [--crop 64x128] [--batch 4]
[--max-disp 32] [--render 4] [--size 96x192] [--rounds 25] [--threads 2] [--blas-default]``.
Times training steps of a network (with the quickstart's fine stage) on a fixed batch, each after
nothing or after rendering ``--render`` synthetic pairs (the quickstart's scene options), the two
taken in turn, and prints each median. The process is set up as the ``stereodistill`` command sets
it up (:func:`stereodistill.runtime.configure_cpu_math`: NumPy's BLAS on one thread); with
``--blas-default`` NumPy's BLAS keeps its default threads, as before that setting existed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from stereodistill.cli.args import size
from stereodistill.data.synthetic import SynthConfig, generate_pair
from stereodistill.models import build_model
from stereodistill.runtime import configure_cpu_math


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lean-l", help="a trainable network (default lean-l)")
    parser.add_argument("--crop", type=size, default=(64, 128), help="training crop HxW (default 64x128)")
    parser.add_argument("--batch", type=int, default=4, help="batch size (default 4)")
    parser.add_argument("--max-disp", type=int, default=32, help="maximum disparity (default 32)")
    parser.add_argument("--render", type=int, default=4, help="pairs rendered before a step (default 4)")
    parser.add_argument("--size", type=size, default=(96, 192), help="rendered pairs HxW (default 96x192)")
    parser.add_argument("--rounds", type=int, default=25, help="steps of each kind (default 25)")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads (default 2)")
    parser.add_argument("--blas-default", action="store_true", help="leave NumPy's BLAS threads at their default")
    args = parser.parse_args()
    configure_cpu_math(limit_blas=not args.blas_default)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    height, width = args.size
    scenes = SynthConfig(height=height, width=width, max_disp=args.max_disp, ground_prob=0.7, thin_objects=2)
    model = build_model(args.arch, max_disp=args.max_disp, fine=4, fine_block=5).train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    left, right = torch.rand(2, args.batch, 3, *args.crop)
    target = torch.rand(args.batch, *args.crop) * (args.max_disp - 1)

    def step() -> float:
        start = time.perf_counter()
        out = model(left, right)
        loss = sum((estimate - target).abs().mean() for estimate in (out.disparity, *out.aux))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    for _ in range(3):  # warm-up
        step()
    rendered = 0
    after: dict[str, list[float]] = {"nothing": [], f"rendering {args.render} pairs": []}
    for _ in range(args.rounds):
        after["nothing"].append(step())
        for _ in range(args.render):
            generate_pair(scenes, (7, rendered))
            rendered += 1
        after[f"rendering {args.render} pairs"].append(step())
    blas = "default threads" if args.blas_default else "one thread"
    crop = f"{args.crop[0]}x{args.crop[1]}"
    print(f"{args.arch}, batch {args.batch} at {crop}, {args.threads} threads, NumPy BLAS {blas}")
    for what, times in after.items():
        print(f"step after {what}: {1000 * statistics.median(times):.1f} ms (median of {len(times)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

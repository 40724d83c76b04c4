"""The block-matching hypothesis and polish of the fine refinement, stage by stage.

Usage: ``python benchmarks/bench_block_match.py [--size 256x512] [--max-disp 32] [--window 5] [--threads 2]
[--repeats 15] [--device cpu]``. Random views at full resolution; the median of repeated runs after
warm-up, with device synchronisation on CUDA. The stages are those of ``fine_block`` and ``fine_polish``:
the census codes and grey images of both views, the costs at every whole disparity (alone, and with
their block average), the cheapest disparity, and the polish of an estimate ± 1 px on the averaged
costs. Run with an older checkout's ``src`` first on ``PYTHONPATH`` to compare versions.
"""

from __future__ import annotations

import argparse

import torch

from stereodistill.cli.args import size
from stereodistill.evaluate.timing import median_ms
from stereodistill.models.block_match import aggregated_costs, block_match, matching_costs, polish
from stereodistill.models.fine_refine import matching_maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=size, default=(256, 512), help="image HxW (default 256x512)")
    parser.add_argument("--max-disp", type=int, default=32, help="disparities searched (default 32)")
    parser.add_argument("--window", type=int, default=5, help="block size (default 5)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    height, width = args.size
    generator = torch.Generator().manual_seed(0)
    left, right = (torch.rand(1, 3, height, width, generator=generator).to(device) for _ in range(2))
    maps = matching_maps(left, right)
    averaged = aggregated_costs(*maps, max_disp=args.max_disp, window=args.window)
    estimate = block_match(averaged) + 0.3
    stages = {
        "census codes and grey images": lambda: matching_maps(left, right),
        "costs at every disparity": lambda: matching_costs(*maps, max_disp=args.max_disp),
        "the same, block-averaged": lambda: aggregated_costs(*maps, max_disp=args.max_disp, window=args.window),
        "cheapest disparity": lambda: block_match(averaged),
        "polish ± 1 px": lambda: polish(estimate, averaged, 1),
    }
    print(f"{height}x{width}, {args.max_disp} disparities, window {args.window}, {args.threads} thread(s), {device}")
    times = {name: median_ms(fn, device, args.repeats, warmup=2) for name, fn in stages.items()}
    for name, ms in times.items():
        print(f"  {name:30s} {ms:7.1f} ms")
    total = sum(ms for name, ms in times.items() if name != "costs at every disparity")  # inside the average
    print(f"  {'all (block match and polish)':30s} {total:7.1f} ms")


if __name__ == "__main__":
    main()

"""Vectorised cost volumes against the per-disparity loops of the original code.

Usage: ``python benchmarks/bench_cost_volume.py [--size 64x128] [--max-disp 48] [--threads 2] [--device cpu]``.
The default size is 1/4 of a 256×512 input with D = 48 (max disparity 192), as in GwcNet-style
networks: group-wise correlation of 320-ch features in 40 groups, full correlation of 320-ch
features, and a concatenation volume of 32-ch features (PSMNet). Median of repeated runs after
warm-up, with device synchronisation on CUDA.
"""

from __future__ import annotations

import argparse

import torch

from stereodistill.cli.args import size
from stereodistill.evaluate.timing import median_ms
from stereodistill.models.cost_volume import (
    concat_volume,
    concat_volume_loop,
    correlation_volume,
    groupwise_correlation_volume,
    groupwise_correlation_volume_loop,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", type=size, default=(64, 128), help="feature map HxW (default 64x128 = 1/4 of 256x512)"
    )
    parser.add_argument("--max-disp", type=int, default=48, help="disparities at feature resolution (default 48)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    height, width = args.size
    d = args.max_disp
    g = torch.Generator().manual_seed(0)
    f320 = [torch.randn(1, 320, height, width, generator=g).to(device) for _ in range(2)]
    f32 = [torch.randn(1, 32, height, width, generator=g).to(device) for _ in range(2)]
    cases = [
        (
            "group-wise, 320 ch / 40 groups",
            lambda: groupwise_correlation_volume_loop(*f320, d, 40),
            lambda: groupwise_correlation_volume(*f320, d, 40),
        ),
        (
            "correlation, 320 ch",
            lambda: groupwise_correlation_volume_loop(*f320, d, 1),
            lambda: correlation_volume(*f320, d),
        ),
        ("concatenation, 32 ch", lambda: concat_volume_loop(*f32, d), lambda: concat_volume(*f32, d)),
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} thread(s)"
    print(f"cost volumes at {height}x{width}, D = {d}, batch 1, {name}, torch {torch.__version__}")
    print(f"{'volume':<32}{'loop ms':>10}{'vectorised ms':>15}{'speed-up':>10}")
    with torch.no_grad():
        for label, loop, vectorised in cases:
            t_loop = median_ms(loop, device, args.repeats)
            t_vec = median_ms(vectorised, device, args.repeats)
            print(f"{label:<32}{t_loop:>10.1f}{t_vec:>15.1f}{t_loop / t_vec:>9.2f}×")


if __name__ == "__main__":
    main()

"""``stereodistill bench``: latency, MACs, parameters and peak memory of networks side by side."""

from __future__ import annotations

import argparse

from stereodistill.cli.args import positive_int, size
from stereodistill.fileio import write_json


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "bench",
        help="benchmark networks: latency, GMACs, parameters, peak memory, speed-up",
        description="Median eval latency (batch 1, after warm-up, with device synchronisation), MACs, parameters "
        "and peak memory of each network, each in its own process; speed-up relative to the first.",
    )
    parser.add_argument("--models", required=True, help="comma-separated architectures or checkpoint paths")
    parser.add_argument("--size", type=size, default=(256, 512), help="input HxW (default 256x512)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--max-disp", type=positive_int, default=192, help="for architectures given by name")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=positive_int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--json", dest="json_out", help="also write the results here")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from stereodistill.errors import ConfigError
    from stereodistill.evaluate.benchmark import benchmark

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but CUDA is not available")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    height, width = args.size
    rows = benchmark(names, height, width, args.device, args.repeats, args.warmup, args.max_disp, args.threads)
    where = (
        torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    )
    print(f"{height}x{width}, batch 1, {where}, median of {args.repeats} after {args.warmup} warm-up")
    print(f"{'model':<24}{'params':>12}{'GMACs':>9}{'latency ms':>12}{'peak MB':>10}{'speed-up':>10}")
    for row in rows:
        print(
            f"{row['name']:<24}{row['params']:>12,}{row['gmacs']:>9.1f}{row['latency_ms']:>12.1f}"
            f"{row['peak_memory_mb']:>10.0f}{row['speedup']:>9.2f}×"
        )
    if len(rows) > 1:
        first = rows[0]
        print(f"against {first['name']}: " + ", ".join(relative_speed(row, first) for row in rows[1:]))
    if args.json_out:
        write_json(args.json_out, {"device": where, "results": rows})
    return 0


def relative_speed(row: dict, reference: dict) -> str:
    """``NAME 3.20× faster`` or ``NAME 1.45× slower``: the direction in words, the factor ≥ 1."""
    ratio = reference["latency_ms"] / row["latency_ms"]
    return f"{row['name']} {ratio:.2f}× faster" if ratio >= 1 else f"{row['name']} {1 / ratio:.2f}× slower"

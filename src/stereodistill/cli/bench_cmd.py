"""``stereodistill bench``: latency, MACs, parameters and peak memory of networks side by side."""

from __future__ import annotations

import argparse

from stereodistill.cli.args import add_device, check_output, max_disp, non_negative_int, positive_int, size
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
    add_device(parser)
    parser.add_argument(
        "--max-disp",
        type=max_disp,
        default=192,
        help="the range of architectures given by name (default 192); a checkpoint has its own",
    )
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--warmup", type=non_negative_int, default=1)
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: the cores this process may use)")
    parser.add_argument("--json", dest="json_out", help="also write the results here")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from stereodistill.checkpoint import checkpoint_paths
    from stereodistill.errors import ConfigError
    from stereodistill.evaluate.benchmark import BUSY_SPREAD, benchmark, spread
    from stereodistill.report.htmlpage import figures
    from stereodistill.runtime import available_cpus, process_cpus, resolve_device

    device = str(resolve_device(args.device))
    threads = args.threads or available_cpus()
    if device == "cpu" and threads > process_cpus():
        print(
            f"warning: --threads {threads} is more than the {process_cpus()} CPUs this process may use: the threads "
            "take turns on them and the latencies measure that",
            file=sys.stderr,
        )
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--models {args.models!r}: no network named")
    check_output(args.json_out, "--json", [path for name in names for path in checkpoint_paths(name)])
    height, width = args.size

    def progress(index: int, name: str) -> None:
        print(f"  [{index + 1}/{len(names)}] {name}", file=sys.stderr, flush=True)

    rows = benchmark(names, height, width, device, args.repeats, args.warmup, args.max_disp, threads, log=progress)
    import torch

    where = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"CPU, {threads} threads"
    print(f"{height}x{width}, batch 1, {where}, median of {args.repeats} after {args.warmup} warm-up")
    wide = max(24, *(len(row["name"]) + 2 for row in rows))  # a checkpoint's path keeps the columns in line
    header = f"{'model':<{wide}}{'max disp':>9}{'params':>12}{'GMACs':>9}{'min ms':>9}{'median ms':>11}{'max ms':>9}"
    header += f"{'peak MB':>9}"
    print(header + f"{'speed-up':>10}")
    for row in rows:
        print(
            f"{row['name']:<{wide}}{row['max_disp']:>9}{row['params']:>12,}{figures(row['gmacs']):>9}"
            f"{row['latency_min_ms']:>9.1f}"
            f"{row['latency_ms']:>11.1f}{row['latency_max_ms']:>9.1f}{row['peak_memory_mb']:>9.0f}"
            f"{row['speedup']:>9.2f}×"
        )
    if len(rows) > 1:
        first = rows[0]
        print(f"against {first['name']}: " + ", ".join(relative_speed(row, first) for row in rows[1:]))
    ranges = {row["max_disp"] for row in rows}
    if len(ranges) > 1:  # a network's cost grows with its range: a speed-up across ranges is not like for like
        print(
            "note: the networks search different disparity ranges ("
            + ", ".join(f"{row['name']} {row['max_disp']}" for row in rows)
            + " px); --max-disp sets the range of those given by name",
            file=sys.stderr,
        )
    busy = [row["name"] for row in rows if spread(row) > BUSY_SPREAD]
    if busy:
        print(
            f"warning: the latencies of {', '.join(busy)} vary by more than {BUSY_SPREAD:.0%} of their median: the "
            "machine was probably busy; rerun on an idle machine or with more --repeats",
            file=sys.stderr,
        )
    if args.json_out:
        write_json(args.json_out, {"device": where, "results": rows})
    return 0


def relative_speed(row: dict, reference: dict) -> str:
    """``NAME 3.20× faster`` or ``NAME 1.45× slower``: the direction in words, the factor ≥ 1."""
    ratio = reference["latency_ms"] / row["latency_ms"]
    return f"{row['name']} {ratio:.2f}× faster" if ratio >= 1 else f"{row['name']} {1 / ratio:.2f}× slower"

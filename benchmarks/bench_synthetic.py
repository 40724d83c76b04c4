"""Throughput of the synthetic stereo generator, in memory and with writing PNG + PFM files.

Usage: ``python benchmarks/bench_synthetic.py [--size 256x512] [--max-disp 64] [--pairs 100] [--threads 1]
[--option KEY=VALUE ...]`` (scene options, e.g. ``photo_prob=0.7 thin_objects=3 camera_effects=true``).
The target is at least 20 pairs/s at 256×512 on one core, in memory.

``--dataset N [--keep-all]`` instead reads N pairs through ``SyntheticStereo``, as training does, and
reports the time, the pairs it kept and the process's peak memory (with ``--keep-all``: no memory
budget, every pair kept, as before the budget existed).
"""

from __future__ import annotations

import os
import sys


def _threads_from_argv(argv: list[str]) -> str:
    """--threads must take effect before NumPy loads its BLAS, so it is read ahead of argparse."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "1"


_THREADS = _threads_from_argv(sys.argv[1:])
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = _THREADS

import argparse  # noqa: E402 - after the thread guard on purpose
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import yaml  # noqa: E402

from stereodistill.cli.args import size  # noqa: E402
from stereodistill.data.synthetic import SynthConfig, SyntheticStereo, generate_pair, write_synthetic  # noqa: E402


def _report(label: str, times: list[float]) -> None:
    median, mean = statistics.median(times), statistics.fmean(times)
    print(
        f"{label:<28} {1.0 / median:7.1f} pairs/s (median)  {1.0 / mean:7.1f} pairs/s (mean)  "
        f"{1000 * median:7.2f} ms/pair median  {1000 * mean:7.2f} ms/pair mean"
    )


def read_dataset(config: SynthConfig, pairs: int, keep_all: bool) -> None:
    """Read ``pairs`` samples once through the training dataset; its time, kept pairs and peak memory."""
    unbounded = {"cache_bytes": 1 << 62} if keep_all else {}
    dataset = SyntheticStereo(pairs, config, seed=0, **unbounded)
    start = time.perf_counter()
    for i in range(pairs):
        dataset[i]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    budget = "no budget" if keep_all else "default budget"
    kept = dataset.kept_pairs
    print(f"dataset, {budget}: {pairs} pairs read in {seconds:.1f} s, {kept} kept, peak RSS {peak:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=size, default=(256, 512), help="HxW (default 256x512)")
    parser.add_argument("--max-disp", type=int, default=64, help="maximum disparity (default 64)")
    parser.add_argument("--pairs", type=int, default=100, help="timed pairs (default 100)")
    parser.add_argument("--threads", type=int, default=1, help="NumPy/BLAS/torch threads (default 1)")
    parser.add_argument("--option", nargs="+", default=[], metavar="KEY=VALUE", help="SynthConfig fields")
    parser.add_argument("--dataset", type=int, metavar="N", help="instead: read N pairs through SyntheticStereo")
    parser.add_argument("--keep-all", action="store_true", help="with --dataset: no memory budget")
    args = parser.parse_args()
    options = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.option)}
    torch.set_num_threads(args.threads)
    height, width = args.size
    config = SynthConfig(height=height, width=width, max_disp=args.max_disp, **options)
    print(
        f"synthetic pairs {height}x{width}, max disparity {args.max_disp}, {args.threads} thread(s), options {options}"
    )
    if args.dataset:
        read_dataset(config, args.dataset, args.keep_all)
        return 0

    for i in range(3):  # warm-up: imports, allocator, BLAS start-up
        generate_pair(config, (12345, i))
    times = []
    for i in range(args.pairs):
        start = time.perf_counter()
        generate_pair(config, (0, i))
        times.append(time.perf_counter() - start)
    _report("in memory", times)

    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic(Path(tmp) / "warmup", 3, config, seed=12345)
        n_write = max(1, min(args.pairs, 50))
        stamps: list[float] = []
        last = time.perf_counter()

        def progress(done: int, total: int) -> None:
            nonlocal last
            now = time.perf_counter()
            stamps.append(now - last)
            last = now

        last = time.perf_counter()
        write_synthetic(Path(tmp) / "out", n_write, config, seed=0, progress=progress)
        _report(f"with PNG+PFM writes ({n_write})", stamps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

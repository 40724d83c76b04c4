"""What a ``lean`` knob costs: the same member built with each setting, timed in alternation.

Usage: ``python benchmarks/bench_lean_knobs.py --knob guide=0,2,4 [--with census=3 ...] [--arch lean]
[--size 256x512] [--threads 1] [--max-disp 192] [--rounds 7]``. ``--with`` sets an option for every
setting alike (``fine``, which every trainable network takes, works as a knob too). Random weights
(latency does not depend on them), eval mode, batch 1. Each round times one forward of every setting
in turn, so a host whose speed drifts slows all of them alike; the table gives each setting's median
over the rounds and its ratio to the first setting.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import yaml

from stereodistill.cli.args import size
from stereodistill.evaluate.timing import time_calls
from stereodistill.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--knob", required=True, help="KNOB=V1,V2,... (YAML values), e.g. guide=0,2,4")
    parser.add_argument("--with", dest="fixed", action="append", default=[], help="KEY=VALUE set for every setting")
    parser.add_argument("--arch", default="lean")
    parser.add_argument("--size", type=size, default=(256, 512), help="input HxW (default 256x512)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-disp", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    knob, _, values = args.knob.partition("=")
    settings = [yaml.safe_load(v) for v in values.split(",")]
    fixed = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.fixed)}
    height, width = args.size
    g = torch.Generator().manual_seed(0)
    left, right = torch.rand(1, 3, height, width, generator=g), torch.rand(1, 3, height, width, generator=g)
    device = torch.device("cpu")
    torch.manual_seed(0)
    nets = [build_model(args.arch, max_disp=args.max_disp, **{**fixed, knob: value}).eval() for value in settings]
    times: list[list[float]] = [[] for _ in nets]
    with torch.inference_mode():
        for net in nets:
            net(left, right)  # warm-up
        for _ in range(args.rounds):
            for net, record in zip(nets, times, strict=True):
                record.extend(time_calls(lambda net=net: net(left, right), device, repeats=1, warmup=0))
    base = statistics.median(times[0])
    given = "".join(f", {key}={value}" for key, value in fixed.items())
    print(f"{args.arch}{given} at {height}x{width}, {args.threads} thread(s), max disparity {args.max_disp}")
    print(f"| {knob} | parameters | median ms | ratio |\n|---|---|---|---|")
    for value, net, record in zip(settings, nets, times, strict=True):
        params = sum(p.numel() for p in net.parameters())
        ms = statistics.median(record)
        print(f"| {value} | {params:,} | {1000 * ms:.1f} | {ms / base:.2f} |")


if __name__ == "__main__":
    main()

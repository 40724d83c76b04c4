"""Speed and size of networks, measured the one way every report uses (README, "Metrics").

Latency: median over repeated eval forwards after warm-up, batch 1, at a stated size, with device
synchronisation. Each network runs in its own process so that one network's caches and allocator
state do not bias the next, and so that peak memory can be measured: on CUDA the allocator's peak,
on CPU the growth of the process's peak resident set during the forwards (includes allocator
caching). In the per-network processes subnormal floats are flushed to zero, as the CLI does
(:mod:`stereodistill.runtime`).
Parameters and MACs come from :mod:`stereodistill.models.summary`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from stereodistill.runtime import describe_exit

#: A latency spread (max − min over the median) above this says the machine was busy.
BUSY_SPREAD = 0.25


def spread(row: dict) -> float:
    """(max − min) / median of a network's latencies."""
    return (row["latency_max_ms"] - row["latency_min_ms"]) / row["latency_ms"]


@dataclass
class BenchResult:
    name: str  # architecture or checkpoint path as given
    arch: str
    max_disp: int  # the range it searches: --max-disp for a name, its own for a checkpoint
    height: int
    width: int
    device: str
    threads: int
    params: int
    gmacs: float
    latency_ms: float
    latency_min_ms: float
    latency_max_ms: float
    peak_memory_mb: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load(name: str, max_disp: int):
    from pathlib import Path

    from stereodistill.checkpoint import checkpoint_paths, load_model
    from stereodistill.models import build_model, list_models

    if name in list_models():
        return build_model(name, max_disp=max_disp)
    if any(p.is_file() for p in checkpoint_paths(Path(name))):
        return load_model(name)
    from stereodistill.errors import ConfigError

    raise ConfigError(f"{name!r} is neither an architecture ({', '.join(list_models())}) nor a checkpoint")


def measure(
    name: str, height: int, width: int, device: str, repeats: int, warmup: int, max_disp: int, threads: int
) -> dict[str, Any]:
    """Benchmark one network in this process (see the module docstring)."""
    import torch

    from stereodistill.evaluate.timing import time_calls
    from stereodistill.models.summary import summarize
    from stereodistill.runtime import torch_threads

    with torch_threads(threads):
        model = _load(name, max_disp)
        dev = torch.device(device)
        model = model.to(dev).eval()
        g = torch.Generator().manual_seed(0)
        left = torch.rand(1, 3, height, width, generator=g).to(dev)
        right = torch.rand(1, 3, height, width, generator=g).to(dev)

        model.prepare()  # a library imported on the first call is not the network's memory
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        with torch.no_grad():
            times = time_calls(lambda: model(left, right), dev, repeats, warmup)
        if dev.type == "cuda":
            peak_mb = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
        else:
            peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024  # KiB on Linux
        # Counted after the forwards: its copies of the weights would otherwise raise the process's peak
        # first, and the forwards reuse that memory (a teacher's peak read as nearly 0 MB).
        summary = summarize(model, height, width)
    return BenchResult(
        name=name,
        arch=model.arch,
        max_disp=int(model.max_disp),
        height=height,
        width=width,
        device=str(dev),
        threads=threads,
        params=summary.params,
        gmacs=summary.gmacs,
        latency_ms=1000 * statistics.median(times),
        latency_min_ms=1000 * min(times),
        latency_max_ms=1000 * max(times),
        peak_memory_mb=peak_mb,
    ).to_dict()


def _child(queue: mp.Queue, parent: int, args: tuple) -> None:
    from stereodistill.runtime import configure_cpu_math, exit_with_parent

    exit_with_parent(parent)  # a killed bench (or ablate) leaves no network running
    configure_cpu_math()  # as the CLI runs networks (a spawned process starts without it)
    try:
        queue.put(("ok", measure(*args)))
    except Exception as exc:  # reported by the parent with the network's name, in one line
        from stereodistill.errors import StereoDistillError

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        ours = isinstance(exc, StereoDistillError)  # says what is wrong itself; anything else is named by its kind
        queue.put(("error", first if ours else f"{type(exc).__name__}: {first}"))


def _result(queue: Any, process: Any) -> tuple[str, Any]:
    """The child's report; a child that dies without one (killed, out of memory) is an error, not a hang."""
    import queue as queues

    while True:
        try:
            return queue.get(timeout=0.5)
        except queues.Empty:
            if not process.is_alive():
                try:
                    return queue.get(timeout=0.5)
                except queues.Empty:
                    return "error", f"the benchmark process died without a result ({describe_exit(process.exitcode)})"


def benchmark(
    names: list[str],
    height: int,
    width: int,
    device: str = "cpu",
    repeats: int = 5,
    warmup: int = 1,
    max_disp: int = 192,
    threads: int = 2,
    isolate: bool = True,
    log: Callable[[int, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Benchmark each network (each in a fresh process when ``isolate``); adds ``speedup`` vs the first.
    ``log(index, name)`` is told as each network starts."""
    from stereodistill.errors import StereoDistillError

    results = []
    for index, name in enumerate(names):
        if log is not None:
            log(index, name)
        args = (name, height, width, device, repeats, warmup, max_disp, threads)
        if not isolate:
            results.append(measure(*args))
            continue
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        process = ctx.Process(target=_child, args=(queue, os.getpid(), args))
        process.start()
        status, value = _result(queue, process)
        process.join()
        if status != "ok":
            raise StereoDistillError(f"bench {name}: {value}")
        results.append(value)
    for row in results:
        row["speedup"] = results[0]["latency_ms"] / row["latency_ms"]
    return results

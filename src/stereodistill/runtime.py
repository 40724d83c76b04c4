"""Process-wide settings: the numeric mode the CLI applies before running networks, and the device.

Soft-argmin heads and ACV attention multiply volumes by softmax weights, many of them tiny; their
products fall into float32's subnormal range, which x86 CPUs process up to a hundred times slower.
Flushing subnormals to zero changes results by less than 1e-38 and cut the DSNet student's CPU
forward at 256×512 from about 3.0 s to 2.0 s (docs/benchmarks.md).

NumPy's BLAS runs on one thread: the synthetic generator's small matrix products used every core,
and the BLAS threads left spinning after each product took the cores from PyTorch's own threads.
A `lean-l` training step right after rendering four pairs took 262–281 ms instead of 191–212
(two cores; docs/benchmarks.md, "Synthetic pairs in memory"); the rendered pairs are the same, bit
for bit. The ``stereodistill`` command applies both; library users who want the same call
:func:`configure_cpu_math` themselves (importing the package changes nothing).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

#: The device names a command or a config accepts.
DEVICE_NAMES = re.compile(r"auto|cpu|cuda(:\d+)?")


def configure_cpu_math(*, limit_blas: bool = True) -> None:
    """Subnormals flushed to zero, NumPy's BLAS on one thread (the module's docstring says why);
    ``limit_blas=False`` leaves the BLAS at its default threads (benchmarks/bench_render_then_step.py
    compares the two)."""
    import os

    import numpy  # noqa: F401 - its BLAS must be loaded for the limit to reach it
    import torch
    from threadpoolctl import ThreadpoolController

    torch.set_flush_denormal(True)
    if not limit_blas:
        return
    # Every BLAS but one that PyTorch ships itself (a build linking MKL dynamically): PyTorch's kernels
    # keep their threads.
    own = os.path.realpath(os.path.dirname(torch.__file__)) + os.sep
    for library in ThreadpoolController().select(user_api="blas").lib_controllers:
        if not os.path.realpath(library.filepath).startswith(own):
            library.set_num_threads(1)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch's CPU thread count set for the block and restored after it: a library call that sets
    it for good changes the numerics of everything its caller runs next (float sums depend on the
    thread count), e.g. a resumed run no longer matching the run it resumes."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def process_cpus() -> int:
    """The CPUs this process may run on (``taskset``, container limits), not all the machine has."""
    import os

    return max(1, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def available_cpus() -> int:
    """The threads a command uses by default: the CPUs this process may run on (threads sized to the
    machine would oversubscribe a pinned process), capped by ``OMP_NUM_THREADS`` where set: a user
    who asks for one thread gets one in every command, child processes too."""
    import os

    cpus = process_cpus()
    asked = re.match(r"\s*([0-9]+)", os.environ.get("OMP_NUM_THREADS", ""), re.ASCII)  # "4" or a list "4,2"
    return min(cpus, int(asked[1])) if asked and int(asked[1]) > 0 else cpus


def resolve_device(name: str):
    """``auto`` → CUDA when available, else CPU; asking for CUDA without it is a ConfigError."""
    import torch

    from stereodistill.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available")
    return device


def machine_info() -> dict[str, str | int | None]:
    """What a report's figures were measured on."""
    import platform

    import torch

    return {
        "platform": platform.platform(),
        "processor": cpu_model() or platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The CPU's model name (``AMD EPYC 7B13``), which latencies are comparable by; on Linux from
    /proc/cpuinfo (``platform.processor()`` there gives only ``x86_64``), else None."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return None


def exit_with_parent(parent: int, poll_s: float = 1.0, says: str | None = None) -> None:
    """Stop this (child) process as soon as ``parent`` is gone: a killed ``ablate``, ``bench`` or
    ``torchrun`` must not leave runs behind that write into folders a resumed one uses, or that skew
    its timing. ``says``: why, on stderr, as it stops."""
    import os
    import sys
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        if says:
            print(f"stereodistill: stopped: {says}", file=sys.stderr, flush=True)
        os._exit(3)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def describe_exit(code: int | None) -> str:
    """How a child process ended, in words: a signal by name (SIGKILL most often being the kernel's
    out-of-memory killer, which leaves no message of its own), else its exit code."""
    import signal

    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + (", most likely for lack of memory" if -code == signal.SIGKILL else "")
    return f"exit code {code}"

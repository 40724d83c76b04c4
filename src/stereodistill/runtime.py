"""Process-wide numeric settings the CLI applies before running networks.

Soft-argmin heads and ACV attention multiply volumes by softmax weights, many of them tiny; their
products fall into float32's subnormal range, which x86 CPUs process up to a hundred times slower.
Flushing subnormals to zero changes results by less than 1e-38 and cut the DSNet student's CPU
forward at 256×512 from about 3.0 s to 2.0 s (docs/benchmarks.md). The ``stereodistill`` command
applies it; library users who want the same call :func:`configure_cpu_math` themselves (importing
the package changes nothing).
"""

from __future__ import annotations


def configure_cpu_math() -> None:
    import torch

    torch.set_flush_denormal(True)

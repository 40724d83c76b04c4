"""Reference numerics: the original releases' order of summation, for bit-for-bit comparisons.

Two speed paths sum the same products in another order than the original code: the banded
matrix-product cost volumes (``cost_volume``) and the oneDNN route of batch-1 3-D convolutions
(``blocks.Conv3d``). Each differs from the original by float32 rounding, which a random-weight
network can amplify to about 1e-3 px (``docs/ports.md``). Inside :func:`reference_numerics` both
take the original code's path (per-disparity loops, PyTorch's own 3-D convolution), so a ported
network reproduces its release's output bit for bit — slower, and meant for verification only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_state = threading.local()


def reference() -> bool:
    """True inside :func:`reference_numerics` (in this thread)."""
    return getattr(_state, "reference", False)


@contextmanager
def reference_numerics(enabled: bool = True) -> Iterator[None]:
    """Run the networks with the original code's summation order while inside the block."""
    before = reference()
    _state.reference = enabled
    try:
        yield
    finally:
        _state.reference = before

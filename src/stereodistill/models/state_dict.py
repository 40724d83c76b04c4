"""Loading a state dict strictly, with an error a person can act on (every tensor must land, every
parameter and buffer must be filled, shapes must agree): shared by our checkpoints and the importer
of release checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from stereodistill.errors import DataError


def load_state_strict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str | Path, what: str | None = None
) -> None:
    """Load ``state`` into ``model``: every tensor must land, every parameter/buffer must be filled.
    ``what`` names the module in the error (default: the network's architecture)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        what = what or f"architecture {getattr(model, 'arch', type(model).__name__)!r}"
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                shown = ", ".join(
                    f"{k} {tuple(state[k].shape)}≠{tuple(own[k].shape)}" if label == "wrong shape" else k
                    for k in keys[:8]
                )
                more = f" (+{len(keys) - 8} more)" if len(keys) > 8 else ""
                parts.append(f"{len(keys)} {label}: {shown}{more}")
        raise DataError(source, f"weights do not fit {what}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)

"""stereodistill: distil large stereo-matching networks into lean, fast students."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "build_model", "import_checkpoint", "load_model", "reference_numerics", "save_model"]

_LAZY = {
    "build_model": "stereodistill.models.zoo",
    "import_checkpoint": "stereodistill.models.import_original",
    "load_model": "stereodistill.checkpoint",
    "reference_numerics": "stereodistill.models.numerics",
    "save_model": "stereodistill.checkpoint",
}


def __getattr__(name: str) -> Any:
    """The public entry points, imported on first use so that ``import stereodistill`` stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stereodistill' has no attribute {name!r}")

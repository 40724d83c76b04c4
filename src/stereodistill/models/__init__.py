"""The model zoo: teachers and students behind one contract (:class:`StereoModel`).

``build_model``, ``list_models`` and ``model_class`` come from :mod:`.zoo`, imported on first use so
that importing this package does not import every network.
"""

from typing import Any

from stereodistill.models.base import StereoModel
from stereodistill.models.output import StereoOutput, TapRecorder
from stereodistill.models.registry import MODELS

__all__ = ["MODELS", "StereoModel", "StereoOutput", "TapRecorder", "build_model", "list_models", "model_class"]


def __getattr__(name: str) -> Any:
    if name in ("build_model", "list_models", "model_class"):
        from stereodistill.models import zoo

        return getattr(zoo, name)
    raise AttributeError(f"module 'stereodistill.models' has no attribute {name!r}")

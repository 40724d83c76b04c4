"""The model zoo: teachers and students behind one contract (:class:`StereoModel`)."""

from stereodistill.models.base import StereoModel
from stereodistill.models.output import StereoOutput, TapRecorder
from stereodistill.models.registry import MODELS, build_model, list_models

__all__ = ["MODELS", "StereoModel", "StereoOutput", "TapRecorder", "build_model", "list_models"]

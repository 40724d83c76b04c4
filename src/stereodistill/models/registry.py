"""The model registry: every network in the zoo registers its architecture name here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stereodistill.registry import Registry

if TYPE_CHECKING:
    from stereodistill.models.base import StereoModel

MODELS: Registry[type[StereoModel]] = Registry("architecture")


def model_class(arch: str) -> type[StereoModel]:
    """The class of a registered architecture (an unknown name is an error listing the known)."""
    import stereodistill.models.zoo  # noqa: F401  (registers every architecture)

    return MODELS.get(arch)


def build_model(arch: str, **config: Any) -> StereoModel:
    """Instantiate a registered architecture (``psmnet``, ``dsnet``, ...) with its constructor options."""
    return model_class(arch)(**config)


def list_models() -> list[str]:
    import stereodistill.models.zoo  # noqa: F401

    return MODELS.names()

"""Importing this module registers every architecture of the zoo; building one by name goes through
it, so that the registry itself imports no network (networks import the registry)."""

from typing import Any

from stereodistill.models import (  # noqa: F401
    acvnet,
    cfnet,
    coex,
    dsnet,
    dsnet_teacher,
    fast_acvnet,
    gwcnet,
    lean,
    leastereo,
    lightstereo,
    psmnet,
    sgbm,
)
from stereodistill.models.base import COMMON_OPTIONS, StereoModel
from stereodistill.models.options import checked_options, plain_value
from stereodistill.models.registry import MODELS


def model_class(arch: str) -> type[StereoModel]:
    """The class of a registered architecture (an unknown name is an error listing the known)."""
    return MODELS.get(arch)


def build_model(arch: str, **config: Any) -> StereoModel:
    """Instantiate a registered architecture (``psmnet``, ``dsnet``, ...) with its constructor options
    (an unknown option or a value of the wrong type is a :class:`ConfigError` naming it; NumPy
    scalars are taken as Python numbers). ``fine: R``, which every trainable network takes, ends it
    in a full-resolution cost refinement of radius R px; ``fine_block: N`` adds a block-matching
    hypothesis to it, ``fine_polish: P`` a classical placement at inference and ``fine_extremes: W``
    the largest and smallest estimate within W × W px as two more hypotheses
    (:meth:`StereoModel.add_fine_refinement`)."""
    cls = model_class(arch)
    options = dict(config)
    fine = [options.pop(key, None) for key in COMMON_OPTIONS]  # fine, fine_block, fine_polish, fine_extremes
    model = cls(**checked_options(cls, arch, options, extra=COMMON_OPTIONS))
    if any(value is not None for value in fine):
        model.add_fine_refinement(*(0 if value is None else plain_value(value) for value in fine))
    return model


def list_models() -> list[str]:
    return MODELS.names()

"""The model registry: every network in the zoo registers its architecture name here. Building a
network by name is :mod:`stereodistill.models.zoo`, which imports them all; this module imports
none of them, so that the networks can import it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stereodistill.registry import Registry

if TYPE_CHECKING:
    from stereodistill.models.base import StereoModel

MODELS: Registry[type[StereoModel]] = Registry("architecture")

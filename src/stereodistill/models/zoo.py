"""Importing this module registers every architecture of the zoo."""

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
)

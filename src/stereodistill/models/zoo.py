"""Importing this module registers every architecture of the zoo."""

from stereodistill.models import acvnet, cfnet, dsnet, dsnet_teacher, gwcnet, lean, leastereo, psmnet  # noqa: F401

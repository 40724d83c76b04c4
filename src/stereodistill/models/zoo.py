"""Importing this module registers every architecture of the zoo."""

from stereodistill.models import acvnet, dsnet, dsnet_teacher, gwcnet, psmnet  # noqa: F401

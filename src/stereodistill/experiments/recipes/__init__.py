"""Packaged recipes (YAML), installed with the package so that commands work from any folder."""

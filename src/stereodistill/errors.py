"""Errors a user can act on: each names the file (or setting) and what is wrong with it.

Untrusted input (a dataset, an image, a checkpoint) must fail with one of these rather than a
traceback from deep inside NumPy or Pillow; the CLI prints them as one line and exits non-zero.
"""

from __future__ import annotations

from pathlib import Path


class StereoDistillError(Exception):
    """Base class of every error meant for the user, not for a developer."""


class DataError(StereoDistillError, ValueError):
    """A file (image, disparity, list, dataset root) is missing, unreadable or inconsistent."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class ConfigError(StereoDistillError, ValueError):
    """A setting or command-line option has a bad value."""


class InputError(StereoDistillError, ValueError):
    """Tensors handed to a model do not fit its contract (e.g. left and right of different sizes)."""


class SharedRefusal(StereoDistillError):
    """Under DDP, another process's refusal that rank 0 made and says: this one stops with it, silently."""

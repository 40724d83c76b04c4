"""Argument types shared by several commands."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stereodistill.runtime import DEVICE_NAMES


def size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``256x512``) into (height, width)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW with positive integers, e.g. 256x512, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``: checked when parsed, so a typo is a usage error."""
    if DEVICE_NAMES.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def add_device(parser: argparse.ArgumentParser) -> None:
    """The one ``--device`` option of every command that runs a network."""
    parser.add_argument(
        "--device", type=device, default="auto", help="auto (CUDA when available, else CPU; default), cpu, cuda[:N]"
    )


def max_disp(text: str) -> int | float:
    """``--max-disp``, one type in every command: a positive number of pixels (an integer stays one, as
    networks take whole disparities; an evaluation range may be fractional)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of pixels, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number of pixels, got {text!r}")
    return int(value) if value.is_integer() else value


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "a whole number >= 0")


def positive_float(text: str) -> float:
    """A finite number above 0 (a tolerance): NaN, infinity and negatives are usage errors."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of 0 or more (a loss weight, where 0 turns it off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def dataset_files(dataset: Any) -> Iterator[Path]:
    """Every file a dataset's samples read: views, ground truth and masks (what an output must not replace)."""
    return (path for files in dataset.files for path in (files.left, files.right, files.disp, files.mask) if path)


def check_output(path: str | Path | None, flag: str, reads: Iterable[str | Path] = ()) -> None:
    """Refuse, before any work, an output that is a folder or would replace a file the command reads
    (``eval CKPT --json CKPT.json`` would destroy the checkpoint it just scored)."""
    from stereodistill.errors import ConfigError
    from stereodistill.fileio import check_writable

    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; name the file to write")
    for read in reads:  # also those not written yet (export's graph, which --json must not replace)
        if Path(read).resolve() == target.resolve():
            raise ConfigError(f"{flag} {path}: is {read}, which this command reads; name another file")
    check_writable(target)  # a read-only folder is found before the work, not after it

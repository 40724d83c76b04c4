"""Load a checkpoint saved by an architecture's original repository into our implementation.

Original checkpoints are pickles; they are read only with ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain containers, so a malicious file cannot run code. The weights
are found under ``state_dict`` (PSMNet), ``model`` (GwcNet, ACVNet, the DSNet code), ``model_state``
(OpenStereo: LightStereo) or at the top level, ``module.`` prefixes from DataParallel are dropped,
the architecture renames or drops what its release names differently
(:meth:`StereoModel.map_original_state`), and then every tensor must land in one of our parameters
or buffers and every one of ours must be filled (BatchNorm's
``num_batches_tracked`` counters, absent from pre-0.4.1 releases, excepted).
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from stereodistill.errors import ConfigError, DataError
from stereodistill.models.base import StereoModel
from stereodistill.models.state_dict import load_state_strict
from stereodistill.models.zoo import build_model, model_class

STATE_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "net")


#: What the first bytes of a PyTorch checkpoint are: a zip archive (PyTorch ≥ 1.6) or a pickle.
_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80")
#: Numeric types whose NumPy scalars release files keep beside the weights (an epoch's EPE, say).
_NUMPY_SCALAR_TYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_NUMPY_SCALAR_TYPES += ("float16", "float32", "float64")


def _numpy_scalar_globals() -> list[Any]:
    """The globals a NumPy scalar pickles through (under NumPy 1's and 2's module names): a scalar
    is rebuilt from its dtype and raw bytes, with no code of the file's choosing."""
    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    scalar = multiarray.scalar
    found: list[Any] = [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    found += [type(np.dtype(name)) for name in _NUMPY_SCALAR_TYPES if type(np.dtype(name)) is not np.dtype]
    return found


def _load_weights_only(path: Path) -> Any:
    """``torch.load(weights_only=True)``, with NumPy scalars allowed; every failure is a one-line
    :class:`DataError` that never suggests a load that could run the file's code."""
    with path.open("rb") as handle:
        head = handle.read(16)
    if not head:
        raise DataError(path, "is empty (0 bytes): not a checkpoint")
    if head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:  # a safetensors header
        raise DataError(
            path,
            "is a safetensors file, a stereodistill checkpoint rather than a release's: load it as ours "
            "(teacher.checkpoint, or adapt without --teacher-arch)",
        )
    if not head.startswith(_CHECKPOINT_MAGIC):
        printable = all(32 <= byte < 127 or byte in b"\t\n\r" for byte in head)
        shown = head.decode("ascii") if printable else head.hex(" ")
        is_html = head.lstrip().lower().startswith((b"<!doctype", b"<html"))
        html = " (an HTML page: a failed download?)" if is_html else ""
        raise DataError(path, f"not a PyTorch checkpoint: it starts with {shown!r}{html}")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on the pickle protocol: not the user's concern
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        blocked = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", text)
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        protocol = " (it was pickled with protocol 4 or above, which PyTorch's weights-only reader lacks)"
        what = (
            f"it holds a {blocked.group(1) or blocked.group(2)} object"
            if blocked
            else f"a weights-only load cannot read it ({detail.group(1).strip() if detail else 'malformed pickle'})"
            + (protocol if "Unsupported operand 149" in text else "")
        )
        raise DataError(
            path,
            f"refused: {what}; only tensors, plain containers and NumPy scalars are read from a checkpoint, "
            "since loading anything else could run code from the file",
        ) from None
    except Exception as exc:  # any other failure to parse means a bad file, said in one line
        raise DataError(path, f"not a readable PyTorch checkpoint, or truncated ({type(exc).__name__})") from None


def read_original(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an original checkpoint, prefixes stripped; never unpickles arbitrary objects."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a folder; give the release's checkpoint file (e.g. its .pth or .tar)")
    if not path.is_file():
        ours = [
            p for p in (path.with_name(path.name + ".json"), path.with_name(path.name + ".safetensors")) if p.is_file()
        ]
        if ours:
            raise DataError(
                path,
                f"is a stereodistill checkpoint ({ours[0].name}), not a release's: load it as ours "
                "(teacher.checkpoint, or adapt without --teacher-arch)",
            )
        raise DataError(path, "checkpoint file does not exist")
    raw: Any = _load_weights_only(path)
    state = raw
    if isinstance(raw, Mapping):
        for key in STATE_KEYS:
            if isinstance(raw.get(key), Mapping):
                state = raw[key]
                if not state:
                    raise DataError(path, f"its state dict ({key!r}) is empty")
                break
        else:  # no known wrapper: the top level must be the state dict itself
            if not raw or not all(isinstance(value, torch.Tensor) for value in raw.values()):
                keys = ", ".join(repr(key) for key in list(raw)[:8]) + (", …" if len(raw) > 8 else "")
                raise DataError(
                    path,
                    f"no state dict found: it holds {keys or 'nothing'} (a state dict is looked for under "
                    f"{', '.join(map(repr, STATE_KEYS))}, or as the whole file)",
                )
    if not isinstance(state, Mapping) or not state:
        raise DataError(path, f"no state dict found: it holds a {type(raw).__name__}, not a mapping of tensors")
    tensors = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise DataError(path, f"state dict key {key!r} is not a name ({type(key).__name__})")
        if not isinstance(value, torch.Tensor):
            raise DataError(path, f"entry {key!r} of the state dict is not a tensor ({type(value).__name__})")
        while key.startswith("module."):
            key = key[len("module.") :]
        tensors[key] = value
    broken = [key for key, value in tensors.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:  # a network made of them predicts NaN, and the run it teaches blames its own loss
        more = f" (and {len(broken) - 3} more)" if len(broken) > 3 else ""
        raise DataError(path, f"holds weights that are not finite (NaN or infinite): {', '.join(broken[:3])}{more}")
    return tensors


def import_checkpoint(path: str | Path, arch: str, **config: Any) -> StereoModel:
    """Our ``arch`` network, in eval mode, holding the weights of an original-repository checkpoint."""
    if not model_class(arch).trainable:
        raise ConfigError(f"{arch} is a classical method: it has no weights to import")
    if config.get("fine"):
        raise ConfigError(f"option fine: an original {arch} release has no fine refinement to import (train one)")
    model = build_model(arch, **config)
    state = model.map_original_state(read_original(path))
    # Releases saved before PyTorch 0.4.1 (PSMNet's, for one) lack BatchNorm's batch counter; it only
    # matters for momentum=None, which none of these networks uses, so it starts from zero.
    for key, value in model.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    try:
        load_state_strict(model, state, path)
    except DataError as exc:
        same_keys = set(state) == set(model.state_dict())  # only shapes differ: perhaps only the range
        fits = _range_that_fits(arch, config, state) if same_keys else None
        if fits is None or fits == model.max_disp:
            raise
        raise DataError(
            path,
            f"{exc.problem}; its weights fit a range of {fits}, not {model.max_disp}: give max disparity {fits} "
            f"(convert --max-disp, teacher.max_disp, adapt --teacher-option max_disp={fits})",
        ) from None
    return model.eval()


#: Ranges a release's weights may have been made for, tried when their shapes follow the range.
_RANGES = (192, 96, 48, 64, 128, 160, 256, 288, 320, 384, 400, 32, 24, 16)


def _range_that_fits(arch: str, config: dict[str, Any], state: dict[str, torch.Tensor]) -> int | None:
    """The max disparity at which ``arch`` has the shapes of ``state`` (networks whose layers count
    disparities, such as LightStereo's and lean's), found on the meta device; None if none does."""
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    for candidate in _RANGES:
        try:
            with torch.device("meta"), torch.random.fork_rng(devices=[]):
                net = build_model(arch, **{**config, "max_disp": candidate})
        except (ConfigError, TypeError, ValueError):
            continue
        if all(shapes.get(key) == tuple(value.shape) for key, value in net.state_dict().items() if key in shapes):
            return candidate
    return None

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from stereodistill.checkpoint import load_state_strict
from stereodistill.errors import DataError
from stereodistill.models.base import StereoModel
from stereodistill.models.registry import build_model

STATE_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "net")


def read_original(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an original checkpoint, prefixes stripped; never unpickles arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint file does not exist")
    try:
        raw: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise DataError(path, f"refused: the file holds objects other than tensors ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise DataError(path, f"not a readable PyTorch checkpoint, or truncated ({exc})") from None
    state = raw
    if isinstance(raw, Mapping):
        for key in STATE_KEYS:
            if isinstance(raw.get(key), Mapping):
                state = raw[key]
                break
    if not isinstance(state, Mapping) or not state:
        raise DataError(path, "no state dict found (looked for 'state_dict', 'model' and a top-level mapping)")
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise DataError(path, f"entry {key!r} of the state dict is not a tensor ({type(value).__name__})")
        while key.startswith("module."):
            key = key[len("module.") :]
        tensors[key] = value
    return tensors


def import_checkpoint(path: str | Path, arch: str, **config: Any) -> StereoModel:
    """Our ``arch`` network, in eval mode, holding the weights of an original-repository checkpoint."""
    model = build_model(arch, **config)
    state = model.map_original_state(read_original(path))
    # Releases saved before PyTorch 0.4.1 (PSMNet's, for one) lack BatchNorm's batch counter; it only
    # matters for momentum=None, which none of these networks uses, so it starts from zero.
    for key, value in model.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    load_state_strict(model, state, path)
    return model.eval()

"""Resumable training checkpoints: safetensors for every tensor, JSON for everything else.

A checkpoint at step k is ``step-000k.safetensors`` + ``step-000k.json`` (the model, loadable by
``stereodistill.load_model``) and ``step-000k.state.safetensors`` (optimiser moments, adapters and
learnable loss weights, RNG states); its JSON is written last, so a checkpoint without its JSON is
incomplete and ignored. Nothing is pickled.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from stereodistill.checkpoint import read_metadata, read_weights, save_model
from stereodistill.errors import DataError
from stereodistill.fileio import atomic_path
from stereodistill.models.state_dict import load_state_strict


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state dict into tensors (safetensors) and the rest (JSON)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _moments(tensors: dict[str, torch.Tensor], params: list[torch.Tensor], where: Path) -> dict[int, dict[str, Any]]:
    """The optimiser's tensors of the state file by parameter index, each checked against its
    parameter (torch checks neither names nor shapes: a wrong one fails at the first step, or is
    silently dropped)."""
    moments: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            index, _, key = name.removeprefix("optim.").partition(".")
            if not (index.isdigit() and key and int(index) < len(params)):
                raise DataError(where, f"{name!r} names no parameter of this run's network ({len(params)} of them)")
            param = params[int(index)]
            if value.dim() and value.shape != param.shape:
                shapes = f"{tuple(value.shape)}, its parameter {tuple(param.shape)}"
                raise DataError(where, f"its optimiser moments do not fit this run's network ({name} is {shapes})")
            moments.setdefault(int(index), {})[key] = value
    names = {key for entries in moments.values() for key in entries}
    for index, entries in sorted(moments.items()):
        if entries.keys() != names:
            missing = ", ".join(f"optim.{index}.{key}" for key in sorted(names - entries.keys()))
            raise DataError(where, f"its optimiser state is incomplete (no {missing})")
    return moments


def _restore_optimizer(optimizer: torch.optim.Optimizer, moments: dict[int, dict[str, Any]], info: dict) -> None:
    state = {index: dict(entries) for index, entries in moments.items()}
    for index, entries in info["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    info = {
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    return tensors, info


def _restore_torch_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _restore_host_rng(info: dict[str, Any]) -> None:
    kind, keys, pos, has_gauss, gauss = info["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = info["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_training_state(
    directory: Path,
    step: int,
    model: torch.nn.Module,
    extra: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    meta: dict[str, Any],
) -> Path:
    """Write the checkpoint of ``step``; returns the model weights' path."""
    name = checkpoint_name(step)
    optim_tensors, optim_info = _optimizer_tensors(optimizer)
    rng_tensors, rng_info = rng_state()
    extra_tensors = {f"extra.{k}": v.detach().cpu().contiguous() for k, v in extra.state_dict().items()}
    with atomic_path(directory / f"{name}.state.safetensors") as tmp:
        save_file({**optim_tensors, **rng_tensors, **extra_tensors}, str(tmp))
    training = {
        "step": step,
        "optimizer": optim_info,
        "rng": rng_info,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    }
    return save_model(directory / name, model, training=training, **meta)


def complete_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints whose JSON (written last) and both tensor files exist, oldest first."""
    found = []
    for info in sorted(directory.glob("step-*.json")):
        base = info.with_suffix("")
        if base.with_suffix(".safetensors").is_file() and (directory / f"{base.name}.state.safetensors").is_file():
            found.append(base)
    return found


def load_training_state(
    base: Path,
    model: torch.nn.Module,
    extra: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> dict[str, Any]:
    """Restore everything saved by :func:`save_training_state`; returns the checkpoint's metadata."""
    meta = read_metadata(base)
    info_path, state_path = base.with_suffix(".json"), base.parent / f"{base.name}.state.safetensors"
    training = meta.get("training")
    if not isinstance(training, dict):
        raise DataError(info_path, "not a training checkpoint (no 'training' state)")
    step = training.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise DataError(info_path, f"training.step must be an integer ≥ 0, got {step!r}")
    load_state_strict(model, read_weights(base), base.with_suffix(".safetensors"))
    try:
        tensors = load_file(str(state_path))
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise DataError(state_path, f"not a readable training state ({exc})") from None
    extras = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
    load_state_strict(extra, extras, state_path, what="this run's adapters and loss weights")
    moments = _moments(tensors, [p for group in optimizer.param_groups for p in group["params"]], state_path)
    if "rng.torch" not in tensors:
        raise DataError(state_path, "holds no random state ('rng.torch')")
    # What the state file holds is checked above and restored last; what the JSON holds, here.
    try:
        _restore_optimizer(optimizer, moments, training["optimizer"])
        _restore_host_rng(training["rng"])
        if scaler is not None and training.get("scaler"):
            scaler.load_state_dict(training["scaler"])
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DataError(info_path, f"its optimiser or random state is damaged ({what})") from None
    try:
        _restore_torch_rng(tensors)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(state_path, f"its random state 'rng.torch' is damaged ({exc})") from None
    return meta


def prune(directory: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step checkpoints (JSON first, so none looks complete)."""
    for base in complete_checkpoints(directory)[:-keep_last] if keep_last > 0 else []:
        for path in (
            base.with_suffix(".json"),
            base.with_suffix(".safetensors"),
            base.parent / f"{base.name}.state.safetensors",
        ):
            path.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    from stereodistill.fileio import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")

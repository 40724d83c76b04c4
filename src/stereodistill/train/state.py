"""Resumable training checkpoints: safetensors for every tensor, JSON for everything else.

A checkpoint at step k is ``step-000k.safetensors`` + ``step-000k.json`` (the model, loadable by
``stereodistill.load_model``) and ``step-000k.state.safetensors`` (optimiser moments, adapters and
learnable loss weights, RNG states); its JSON is written last, so a checkpoint without its JSON is
incomplete and ignored. Nothing is pickled.
"""

from __future__ import annotations

import json
import random
import re
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


#: The only optimiser state torch keeps as a scalar tensor; every other state tensor of its optimisers
#: (Adam's ``exp_avg``, ``exp_avg_sq``) has its parameter's shape.
SCALAR_STATE = frozenset({"step"})
#: A parameter index as torch writes it (ASCII digits, no leading zero: ``01`` and ``²`` are damage).
_INDEX = re.compile("0|[1-9][0-9]*")


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimiser's parameters in the order torch numbers them in its state dict."""
    return [param for group in optimizer.param_groups for param in group["params"]]


def _expected_moments(optimizer: torch.optim.Optimizer) -> set[str] | None:
    """What one step leaves in a parameter's state under this run's optimiser (Adam and AdamW, the
    ones ``optim.name`` offers); ``None`` for another, whose state is only checked for consistency."""
    if not isinstance(optimizer, torch.optim.Adam):
        return None
    amsgrad = any(group.get("amsgrad") for group in optimizer.param_groups)
    return {"step", "exp_avg", "exp_avg_sq", *(["max_exp_avg_sq"] if amsgrad else [])}


def _moments(tensors: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, where: Path) -> dict[int, dict]:
    """The optimiser's tensors of the state file by parameter index, their names and completeness
    checked (torch checks neither: a stray one is silently dropped, a missing one fails mid-step).
    A parameter may have none (it has not been updated yet); one that has some has them all."""
    count = len(_params(optimizer))
    moments: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            index, _, key = name.removeprefix("optim.").partition(".")
            if not (_INDEX.fullmatch(index) and key and int(index) < count):
                raise DataError(where, f"{name!r} names no parameter of this run's network ({count} of them)")
            if not value.is_floating_point():  # torch would cast it to the parameter's type, truncated
                raise DataError(where, f"{name!r} holds {value.dtype}, where the optimiser keeps floating point")
            moments.setdefault(int(index), {})[key] = value
    expected = _expected_moments(optimizer) or {key for entries in moments.values() for key in entries}
    for index, entries in sorted(moments.items()):
        if entries.keys() != expected:
            wrong = [f"no optim.{index}.{key}" for key in sorted(expected - entries.keys())]
            wrong += [f"an unknown optim.{index}.{key}" for key in sorted(entries.keys() - expected)]
            raise DataError(where, f"its optimiser state does not fit this run's optimiser ({', '.join(wrong)})")
    return moments


def _restore_optimizer(optimizer: torch.optim.Optimizer, moments: dict[int, dict[str, Any]], info: dict) -> None:
    """Load the moments into ``optimizer`` as the JSON's record maps them; ValueError for a record that
    does not fit. The hyperparameters stay the run's own (its config, which ``--allow-changes`` may
    have changed), not the record's; the schedule sets the learning rate every step."""
    groups, count = info["param_groups"], len(_params(optimizer))
    ids = [index for group in groups for index in group["params"]]
    if ids != list(range(count)):  # torch maps the moments by these ids: others would misplace or drop them
        raise ValueError(f"param_groups list parameter ids {ids[:8]}…, not 0 to {count - 1} in order")
    state = {index: dict(entries) for index, entries in moments.items()}
    tensors_only = _expected_moments(optimizer) is not None  # Adam: the state file holds all its state
    for index, entries in info["scalars"].items():
        if tensors_only:
            raise ValueError(f"scalars.{index} holds {', '.join(entries)}, which Adam keeps as tensors")
        if not (_INDEX.fullmatch(index) and int(index) < count):
            raise ValueError(f"scalars.{index} names no parameter of this run's network ({count} of them)")
        state.setdefault(int(index), {}).update(entries)
    own = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    for group, values in zip(optimizer.param_groups, own, strict=True):
        group.update(values)


def _wrong_moments(optimizer: torch.optim.Optimizer) -> str | None:
    """A loaded moment whose shape is not that of the parameter torch mapped it to, named; ``None``
    when all fit."""
    for index, param in enumerate(_params(optimizer)):
        for key, value in optimizer.state.get(param, {}).items():
            shape = () if key in SCALAR_STATE else tuple(param.shape)
            if isinstance(value, torch.Tensor) and tuple(value.shape) != shape:
                return f"optim.{index}.{key} is {tuple(value.shape)}, where {shape} is expected"
    return None


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


def _is_word(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def _restore_host_rng(info: dict[str, Any]) -> None:
    """NumPy's and Python's generators from the JSON, each checked first: both take an out-of-range
    key or position without a word (truncated, or read out of bounds)."""
    kind, keys, pos, has_gauss, gauss = info["numpy"]
    if not (kind == "MT19937" and len(keys) == 624 and all(map(_is_word, keys)) and _is_word(pos) and pos <= 624):
        raise ValueError("rng.numpy is not an MT19937 state (624 32-bit words and a position up to 624)")
    if has_gauss not in (0, 1) or not isinstance(gauss, float | int):
        raise ValueError("rng.numpy has no valid cached Gaussian")
    version, internal, gauss_next = info["python"]
    if not (version == 3 and len(internal) == 625 and all(map(_is_word, internal)) and internal[-1] <= 624):
        raise ValueError("rng.python is not a version-3 Mersenne Twister state (625 32-bit words)")
    if not (gauss_next is None or isinstance(gauss_next, float)):
        raise ValueError(f"rng.python's cached Gaussian is {gauss_next!r}")
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
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
    moments = _moments(tensors, optimizer, state_path)
    if "rng.torch" not in tensors:
        raise DataError(state_path, "holds no random state ('rng.torch')")
    # What the state file holds is checked above and restored last; what the JSON holds, here.
    try:
        _restore_optimizer(optimizer, moments, training["optimizer"])
        _restore_host_rng(training["rng"])
        if scaler is not None and training.get("scaler"):
            scaler.load_state_dict(training["scaler"])
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError, OverflowError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DataError(info_path, f"its optimiser or random state is damaged ({what})") from None
    wrong = _wrong_moments(optimizer)
    if wrong:
        raise DataError(state_path, f"its optimiser moments do not fit this run's network ({wrong})")
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

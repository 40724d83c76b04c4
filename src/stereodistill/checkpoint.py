"""Our checkpoints: ``NAME.safetensors`` (weights) beside ``NAME.json`` (architecture, config, state).

Nothing here unpickles: safetensors holds only tensors and JSON only data, so a checkpoint from an
untrusted source cannot run code. Both files are written atomically; a checkpoint that is not
ours, is truncated, or does not fit its architecture fails with an error naming the file.
"""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stereodistill import __version__
from stereodistill.errors import ConfigError, DataError
from stereodistill.fileio import atomic_path, write_json
from stereodistill.models.state_dict import load_state_strict

FORMAT = "stereodistill-checkpoint"
FORMAT_VERSION = 1


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, metadata) paths for ``x``, ``x.safetensors`` or ``x.json``."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def check_writable(path: str | Path) -> tuple[Path, Path]:
    """A checkpoint's (weights, metadata) paths, refused if either is a folder: both are checked before
    either is written, so the weights are never written without their metadata."""
    targets = checkpoint_paths(path)
    for target in targets:
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a checkpoint file to write", str(target))
    return targets


def save_model(path: str | Path, model: torch.nn.Module, **meta: Any) -> Path:
    """Write ``model`` (a :class:`StereoModel`) and ``meta`` (JSON-able); returns the weights path."""
    weights, info = check_writable(path)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "stereodistill_version": __version__,
        "arch": model.arch,
        "config": model.config,
        **meta,
    }
    write_json(info, record, sort_keys=True)  # a metric that is NaN (no valid pixel) is written as null
    return weights


def read_metadata(path: str | Path) -> dict[str, Any]:
    folder = Path(path)
    if folder.is_dir():
        if (folder / "model.json").is_file():
            raise DataError(folder, f"is a run folder, not a checkpoint: use {folder / 'model'} (or its best.*)")
        raise DataError(folder, "is a folder, not a checkpoint (NAME, NAME.safetensors or NAME.json)")
    weights, info = checkpoint_paths(path)
    if not info.is_file() and not weights.is_file():
        if folder.is_file():  # a release's .pth or .tar, most likely
            raise DataError(
                folder,
                "is not a stereodistill checkpoint (NAME.safetensors + NAME.json); a release's checkpoint is "
                "imported with `stereodistill convert --arch ARCH FILE OUT`, or read as teacher.original with "
                "teacher.arch (adapt: --teacher-arch ARCH)",
            )
        raise DataError(path, f"checkpoint does not exist (no {weights.name} or {info.name})")
    if not info.is_file():
        hint = "" if weights.is_file() else f" (and no {weights.name})"
        raise DataError(info, f"checkpoint metadata is missing{hint}; is this a stereodistill checkpoint?")
    try:
        record = json.loads(info.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(info, f"checkpoint metadata is not valid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DataError(info, "not a stereodistill checkpoint (no 'format': 'stereodistill-checkpoint')")
    if not isinstance(record.get("arch"), str) or not isinstance(record.get("config"), dict):
        raise DataError(info, "checkpoint metadata lacks a valid 'arch' and 'config' (the network it was saved from)")
    return record


def _effective(arch: str, config: dict[str, Any]) -> dict[str, Any]:
    """A network's configuration with the constructor's defaults filled in: ``{}`` and
    ``{"align_corners": False}`` build the same PSMNet."""
    from stereodistill.config import keyword_parameters
    from stereodistill.models.zoo import model_class

    found = keyword_parameters(model_class(arch))
    defaults = {
        name: param.default for name, param in (found[0] if found else {}).items() if param.default is not param.empty
    }
    return {**defaults, **config}


def check_init(path: str | Path, model: torch.nn.Module) -> str | None:
    """A run's ``model.init`` checked against the network it initialises, before its weights are loaded:
    another network (architecture or options: the weights may fit and then train as a network they
    were not made for) is a ConfigError, and so is another range where the weights' shapes follow it;
    another range otherwise is allowed, and returned as a note to log. A preset and its knobs spelled
    out (``dsnet-noatt``, ``dsnet`` with ``attention: false``) are the same network."""
    record = read_metadata(path)
    _, info = checkpoint_paths(path)
    with torch.device("meta"):  # the saved network's own account of itself (a preset's knobs resolved), no weights
        saved_net = _build_recorded(record, info)
    saved, built = _effective(record["arch"], saved_net.config), _effective(model.arch, model.config)
    saved_disp, built_disp = saved.pop("max_disp", None), built.pop("max_disp", None)
    differ = sorted(key for key in saved.keys() | built.keys() if saved.get(key) != built.get(key))
    same_layers = set(saved_net.state_dict()) == set(model.state_dict())  # a preset and its knobs: one network
    if record["arch"] != model.arch and (differ or not same_layers):
        raise ConfigError(f"model.init {path}: a {record['arch']} checkpoint, but model.arch is {model.arch}")
    if differ:
        said = ", ".join(f"{key}: {saved.get(key)!r}" for key in differ)
        set_to = " ".join(f"model.options.{key}={json.dumps(saved.get(key))}" for key in differ)
        raise ConfigError(
            f"model.init {path}: {info.name} says its network was made with {said}, this run's has "
            f"{', '.join(f'{key}: {built.get(key)!r}' for key in differ)}; set {set_to} to train the same network"
        )
    if saved_disp == built_disp:
        return None
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    if any(shapes.get(key) != tuple(value.shape) for key, value in saved_net.state_dict().items()):
        raise ConfigError(
            f"model.init {path}: made at max disparity {saved_disp}, and {model.arch}'s weights follow its range; "
            f"set model.max_disp={saved_disp} to start from them"
        )
    return f"model.init {path}: weights of a network of range {saved_disp}, trained here at {built_disp}"


def _build_recorded(record: dict[str, Any], info: Path) -> torch.nn.Module:
    """The network a checkpoint's metadata names, with fresh weights (the caller's random state left
    alone: they are replaced); a config that does not fit its architecture is named in ``info``."""
    from stereodistill.models.zoo import build_model

    try:
        with torch.random.fork_rng(devices=[]):
            return build_model(record["arch"], **record.get("config", {}))
    except (TypeError, ConfigError) as exc:
        raise DataError(info, f"config does not fit architecture {record['arch']!r} ({exc})") from None


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    weights, _ = checkpoint_paths(path)
    if not weights.is_file():
        raise DataError(weights, "checkpoint weights file does not exist")
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(weights, f"not a readable safetensors file ({exc})") from None


def classical_network(name: str | Path) -> bool:
    """Whether ``name`` is a classical method of the zoo (``sgbm``: no weights) rather than a checkpoint
    (a file or checkpoint of that name wins; a folder of that name, which is no checkpoint, does not)."""
    from stereodistill.models.zoo import list_models, model_class

    if Path(name).is_file() or any(p.is_file() for p in checkpoint_paths(name)):
        return False
    return str(name) in list_models() and not model_class(str(name)).trainable


def load_network(
    name: str | Path, map_location: str | torch.device = "cpu", max_disp: float | None = None
) -> torch.nn.Module:
    """A checkpoint, or a classical method of the zoo by name (``sgbm``, which has no weights), so
    that every command running a network takes either; ``max_disp`` sets the method's range (rounded
    up to a multiple of 4; default 192)."""
    if classical_network(name):
        from stereodistill.models.zoo import model_class

        span = -(-math.ceil(max_disp) // 4) * 4 if max_disp else 192
        return model_class(str(name))(max_disp=span).to(map_location).eval()
    return load_model(name, map_location)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the network a checkpoint names and load its weights (eval mode)."""
    record = read_metadata(path)
    weights_path, info = checkpoint_paths(path)
    model = _build_recorded(record, info)
    load_state_strict(model, read_weights(path), weights_path)
    return model.to(map_location).eval()

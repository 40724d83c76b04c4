"""ONNX export for deployment, checked against PyTorch before the file is kept.

The graph takes what every network of the zoo takes (two 1×3×H×W images in [0, 1]; normalisation,
padding and cropping are inside) and returns the 1×H×W disparity, at the fixed size it was exported
for. It is written through :func:`torch.onnx.export` with ``dynamo=True``: the TorchScript exporter
cannot express the strided views our vectorised cost volumes are built from. The exported file is
run in ONNX Runtime on a synthetic pair and compared with the PyTorch model; only a graph within
tolerance replaces the output path (written to a temporary file first).

``onnx``, ``onnxscript`` and ``onnxruntime`` are the optional extra ``stereodistill[export]``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stereodistill.errors import ConfigError, StereoDistillError
from stereodistill.evaluate.timing import median_ms
from stereodistill.fileio import atomic_path

#: The ONNX operator set written; opset 18 is what ONNX Runtime ≥ 1.14 and TensorRT ≥ 8.6 read.
OPSET = 18


class ExportError(StereoDistillError):
    """The exported graph does not reproduce the PyTorch model."""


@dataclass
class ExportCheck:
    """How the ONNX graph compares with PyTorch on one pair, and what each costs on this machine."""

    max_abs_diff_px: float
    mean_abs_diff_px: float
    torch_ms: float
    onnxruntime_ms: float
    threads: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DisparityGraph(nn.Module):
    """The network as deployment sees it: (left, right) → disparity, no taps."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.model(left, right).disparity


def require_runtime() -> None:
    """Fail early, with the install line, if the optional export packages are missing."""
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"ONNX export needs {', '.join(missing)}: pip install 'stereodistill[export]' "
            "(or pip install onnx onnxscript onnxruntime)"
        )


def _write_graph(model: nn.Module, example: tuple[torch.Tensor, torch.Tensor], path: Path) -> None:
    graph = DisparityGraph(model).eval()
    # The exporter reports each phase on stdout and warns about absent torchvision ops through logging.
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(
                graph,
                example,
                dynamo=True,
                opset_version=OPSET,
                input_names=["left", "right"],
                output_names=["disparity"],
                verbose=False,
            )
    finally:
        quiet.setLevel(level)
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise ExportError("the ONNX exporter returned no program")
    program.save(str(path), external_data=False)


def check_graph(
    path: Path,
    model: nn.Module,
    example: tuple[torch.Tensor, torch.Tensor],
    repeats: int = 5,
    threads: int = 2,
) -> ExportCheck:
    """Run the graph in ONNX Runtime (CPU) and PyTorch on the same pair; compare and time both."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {"left": example[0].numpy(), "right": example[1].numpy()}
    graph = DisparityGraph(model).eval()
    cpu = torch.device("cpu")
    with torch.no_grad():
        reference = graph(*example).numpy()
        torch_ms = median_ms(lambda: graph(*example), cpu, repeats)
    (onnx_out,) = session.run(["disparity"], feeds)
    onnx_ms = median_ms(lambda: session.run(["disparity"], feeds), cpu, repeats)
    if onnx_out.shape != reference.shape:
        raise ExportError(f"ONNX output has shape {onnx_out.shape}, PyTorch {reference.shape}")
    diff = abs(onnx_out - reference)
    return ExportCheck(float(diff.max()), float(diff.mean()), torch_ms, onnx_ms, threads)


def export_onnx(
    model: nn.Module,
    out: str | Path,
    example: tuple[torch.Tensor, torch.Tensor],
    tolerance_px: float = 0.01,
    repeats: int = 5,
    threads: int = 2,
) -> ExportCheck:
    """Export ``model`` for inputs shaped like ``example`` and keep the file only if ONNX Runtime
    reproduces PyTorch's disparity within ``tolerance_px`` on ``example``."""
    require_runtime()
    if example[0].shape != example[1].shape or example[0].dim() != 4 or example[0].shape[:2] != (1, 3):
        raise ConfigError(f"the example pair must be two 1×3×H×W images, got {tuple(example[0].shape)}")
    model = model.to("cpu").eval()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with atomic_path(out) as tmp:
            _write_graph(model, example, tmp)
            check = check_graph(tmp, model, example, repeats, threads)
            if not check.max_abs_diff_px <= tolerance_px:
                raise ExportError(
                    f"{out}: ONNX Runtime differs from PyTorch by up to {check.max_abs_diff_px:.3g} px "
                    f"(tolerance {tolerance_px} px); nothing was written"
                )
    finally:
        torch.set_num_threads(previous)
    return check

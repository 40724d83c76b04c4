"""ONNX export for deployment, checked against PyTorch before the file is kept.

The graph takes what every network of the zoo takes (two 1×3×H×W images in [0, 1]; normalisation,
padding and cropping are inside) and returns the 1×H×W disparity, at the fixed size it was exported
for. It is written through :func:`torch.onnx.export` with ``dynamo=True``: the TorchScript exporter
cannot express the strided views our vectorised cost volumes are built from. The exported file is
run in ONNX Runtime on a synthetic pair and compared with the PyTorch model; only a graph within
tolerance replaces the output path (written to a temporary file first).

:func:`quantize_int8` then derives an int8 graph from a checked float graph with ONNX Runtime's
static quantisation (QDQ format, per-channel int8 weights, uint8 activations calibrated by MinMax on
a few synthetic pairs). The estimation head — every ``Softmax`` and everything downstream of it
(soft-argmin, convex upsampling) — stays in float: quantising it rounds the regressed disparity to
1/255 of its range (0.75 px at max_disp 192), and on a briefly trained ``lean`` at 128×256 it was
both less faithful (mean |int8 − float| 0.25 px against 0.19) and slower (24 ms against 19 at one
thread) than keeping it in float. Restricting quantisation to Conv and Add instead was slower still
(dequantise and requantise around every other op). The int8 graph is not held to the float tolerance; it is
kept only if its output is finite, and it is timed and scored (EPE on held-out synthetic pairs with
ground truth) beside the PyTorch model and the float graph.

``onnx``, ``onnxscript`` and ``onnxruntime`` are the optional extra ``stereodistill[export]``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stereodistill.errors import ConfigError, StereoDistillError
from stereodistill.evaluate.timing import median_ms
from stereodistill.fileio import atomic_path
from stereodistill.runtime import torch_threads

#: The ONNX operator set written; opset 18 is what ONNX Runtime ≥ 1.14 and TensorRT ≥ 8.6 read.
OPSET = 18


def nothing_written(out: Path) -> str:
    """What a refused export leaves: nothing new, and a file already there (an earlier export) as it was."""
    return "nothing was written" + (" (the file already there is left as it was)" if Path(out).exists() else "")


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


@dataclass
class Int8Check:
    """The int8 graph beside the float one: latencies in ONNX Runtime and EPE on held-out pairs.

    ``speedup`` is float latency / int8 latency (> 1: int8 is faster); ``epe_change_px`` is the int8
    graph's EPE minus the float graph's. ``preprocessed`` says whether ``quant_pre_process`` ran
    (see :func:`quantize_int8`); ``float_nodes`` counts the head nodes left in float.
    """

    onnx_int8: str
    onnxruntime_float_ms: float
    onnxruntime_int8_ms: float
    speedup: float
    torch_epe_px: float
    float_epe_px: float
    int8_epe_px: float
    epe_change_px: float
    calib_pairs: int
    eval_pairs: int
    preprocessed: bool
    float_nodes: int
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


def synthetic_pairs(
    height: int, width: int, max_disp: int, seeds: Sequence[int | Sequence[int]]
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Rendered pairs with ground truth, as (left, right) 1×3×H×W tensors in [0, 1] and H×W disparity.

    Synthetic disparities stay below ``min(max_disp, width / 4)`` (and at least 4 px of range), so a
    pair fits the network and leaves most pixels visible in both views.
    """
    from stereodistill.data.synthetic import SynthConfig, generate_pair

    config = SynthConfig(height=height, width=width, max_disp=max(4, min(max_disp, width // 4)))
    pairs = []
    for seed in seeds:
        pair = generate_pair(config, seed=seed)
        left, right = (torch.from_numpy(x.transpose(2, 0, 1).copy())[None] for x in (pair.left, pair.right))
        pairs.append((left, right, torch.from_numpy(pair.disp)))
    return pairs


def int8_path(out: str | Path) -> Path:
    """Where the int8 graph of ``out`` goes: ``student.onnx`` → ``student.int8.onnx``."""
    out = Path(out)
    stem = out.name[: -len(".onnx")] if out.name.lower().endswith(".onnx") else out.name
    return out.with_name(f"{stem}.int8.onnx")


def session_options(threads: int):
    """ONNX Runtime CPU session options, the same for every graph timed here."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def _session(path: Path, threads: int):
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime's own Fail/InvalidGraph/... types, none of them public
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"ONNX Runtime cannot load the exported graph ({reason})") from None


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
    session = _session(path, threads)
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
    for name, output in (("PyTorch's", reference), ("ONNX Runtime's", onnx_out)):
        if not np.isfinite(output).all():  # the difference would read "nan px"; say whose answer is broken
            cause = "the network's weights are broken" if output is reference else "the graph differs from PyTorch"
            raise ExportError(
                f"{name} disparity is not finite (NaN or infinite) at {int((~np.isfinite(output)).sum())} of "
                f"{output.size} pixels on the check pair: {cause}"
            )
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
    with torch_threads(threads), atomic_path(out) as tmp:
        _write_graph(model, example, tmp)
        try:
            check = check_graph(tmp, model, example, repeats, threads)
        except ExportError as error:
            raise ExportError(f"{out}: {error}; {nothing_written(out)}") from None
        if not check.max_abs_diff_px <= tolerance_px:
            raise ExportError(
                f"{out}: ONNX Runtime differs from PyTorch by up to {check.max_abs_diff_px:.3g} px "
                f"(tolerance {tolerance_px} px); {nothing_written(out)}"
            )
    return check


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The quantiser reports through the root logger and warns about opset upgrades; keep errors only."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _head_nodes(path: Path) -> list[str]:
    """Names of every ``Softmax`` node and of every node downstream of one: the estimation head."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    head: set[str] = set()
    stack = [node for node in graph.node if node.op_type == "Softmax"]
    while stack:
        node = stack.pop()
        if node.name in head:
            continue
        head.add(node.name)
        for name in node.output:
            stack.extend(consumers.get(name, []))
    return sorted(head)


def _calibration_reader(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([{"left": left.numpy(), "right": right.numpy()} for left, right in pairs])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    return Reader()


def rename_computed_tensors(source: Path, out: Path) -> None:
    """Give every computed tensor a name of its own (``NAME__t``); inputs, outputs and weights keep theirs.

    The exporter names constant-folded weights and computed tensors from one counter per operator
    (``sub_98`` a folded batch-norm bias, ``sub_99`` a subtraction's result), and ONNX Runtime's
    quantiser names the weight it creates when it fuses a convolution with the next counter value:
    on ``lean`` that defined ``sub_99`` twice and the int8 graph did not load.
    """
    import onnx

    model = onnx.load(str(source))
    graph = model.graph
    fixed = {v.name for v in graph.input} | {v.name for v in graph.output} | {w.name for w in graph.initializer}
    names = {o: f"{o}__t" for node in graph.node for o in node.output if o and o not in fixed}
    for node in graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
        node.output[:] = [names.get(name, name) for name in node.output]
    for info in graph.value_info:
        info.name = names.get(info.name, info.name)
    onnx.save(model, str(out))


def _quantize(
    float_path: Path, out: Path, calibration: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[bool, int]:
    """Write the int8 graph of ``float_path`` to ``out``; returns (preprocessed, head nodes left in float)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    with tempfile.TemporaryDirectory(prefix="stereodistill-int8-") as scratch, _quiet_quantizer():
        # Shape inference and graph optimisation first (folds the exporter's BatchNormalization into
        # the convolutions, so each weight is quantised once, per output channel). ONNX Runtime's
        # symbolic shape inference fails on some graphs (it did on a ReduceMax with axes given as an
        # input); our graphs have fixed shapes, so ONNX's own inference is enough and is tried next.
        # Should both fail, quantising the unprocessed graph still works, only with fewer fusions.
        source = Path(scratch) / "preprocessed.onnx"
        preprocessed = False
        for skip_symbolic in (False, True):
            try:
                quant_pre_process(str(float_path), str(source), skip_symbolic_shape=skip_symbolic)
                preprocessed = True
                break
            except Exception:
                continue
        if not preprocessed:
            source = float_path
        renamed = Path(scratch) / "renamed.onnx"
        rename_computed_tensors(source, renamed)
        source = renamed
        head = _head_nodes(source)
        quantize_static(
            str(source),
            str(out),
            _calibration_reader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # uint8 activations × int8 weights: the pairing ONNX Runtime's x86 kernels (VNNI or not)
            # and ARM kernels all run; no reduce_range, which only helps pre-VNNI x86 and costs a bit.
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=head,
        )
    return preprocessed, len(head)


def _epe(disparity: np.ndarray, gt: torch.Tensor, max_disp: float) -> float:
    """EPE by the project's one metric protocol, over valid ground truth (finite, > 0, < max_disp)."""
    from stereodistill.data.sample import valid_mask
    from stereodistill.evaluate.metrics import compute_metrics

    truth = gt.numpy().reshape(disparity.shape)
    valid = valid_mask(truth, None if math.isinf(max_disp) else max_disp)
    return compute_metrics(torch.from_numpy(disparity), torch.from_numpy(truth), torch.from_numpy(valid))["epe"]


def one_line(error: Exception, limit: int = 400) -> str:
    """``Type: message`` on one line: ONNX Runtime's messages span lines and end in a newline."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quantize_int8(
    model: nn.Module,
    float_path: str | Path,
    out: str | Path,
    calibration: Sequence[tuple[torch.Tensor, torch.Tensor]],
    held_out: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    repeats: int = 5,
    threads: int = 2,
) -> Int8Check:
    """Quantise the float graph at ``float_path`` (from :func:`export_onnx`) to int8 at ``out``.

    ``calibration`` pairs set the activation ranges; ``held_out`` pairs (left, right, ground-truth
    disparity) score PyTorch, the float graph and the int8 graph, and must be other pairs than the
    calibration ones. The int8 graph replaces ``out`` only if its output on every held-out pair is
    finite (it is not held to the float tolerance: quantisation changes the output by design).
    Latencies are medians of ``repeats`` runs after one warm-up, at ``threads`` threads, on the first
    held-out pair.
    """
    require_runtime()
    if not calibration or not held_out:
        raise ConfigError("int8 quantisation needs at least one calibration and one held-out pair")
    float_path = Path(float_path)
    model = model.to("cpu").eval()
    max_disp = float(getattr(model, "max_disp", math.inf))
    graph = DisparityGraph(model).eval()
    cpu = torch.device("cpu")
    with torch_threads(threads), atomic_path(out) as tmp:
        try:
            preprocessed, float_nodes = _quantize(float_path, tmp, calibration)
        except Exception as error:  # the quantiser fails with asserts and ValueErrors alike (e.g. no finite range)
            raise ExportError(f"{out}: int8 quantisation failed ({one_line(error)}); {nothing_written(out)}") from error
        float_session = _session(float_path, threads)
        try:
            int8_session = _session(tmp, threads)
        except Exception as error:  # the quantiser wrote a graph ONNX Runtime refuses
            raise ExportError(
                f"{out}: ONNX Runtime cannot load the int8 graph ({one_line(error)}); {nothing_written(out)}"
            ) from error
        epes: dict[str, list[float]] = {"torch": [], "float": [], "int8": []}
        for left, right, gt in held_out:
            feeds = {"left": left.numpy(), "right": right.numpy()}
            (int8_out,) = int8_session.run(["disparity"], feeds)
            if not np.isfinite(int8_out).all():
                raise ExportError(
                    f"{out}: the int8 graph gives non-finite disparities "
                    f"({int(np.sum(~np.isfinite(int8_out)))} of {int8_out.size}); {nothing_written(out)}"
                )
            (float_out,) = float_session.run(["disparity"], feeds)
            with torch.no_grad():
                torch_out = graph(left, right).numpy()
            for key, disparity in (("torch", torch_out), ("float", float_out), ("int8", int8_out)):
                epes[key].append(_epe(disparity, gt, max_disp))
        feeds = {"left": held_out[0][0].numpy(), "right": held_out[0][1].numpy()}
        float_ms = median_ms(lambda: float_session.run(["disparity"], feeds), cpu, repeats)
        int8_ms = median_ms(lambda: int8_session.run(["disparity"], feeds), cpu, repeats)
    torch_epe, float_epe, int8_epe = (float(np.mean(epes[key])) for key in ("torch", "float", "int8"))
    return Int8Check(
        onnx_int8=str(out),
        onnxruntime_float_ms=float_ms,
        onnxruntime_int8_ms=int8_ms,
        speedup=float_ms / int8_ms,
        torch_epe_px=torch_epe,
        float_epe_px=float_epe,
        int8_epe_px=int8_epe,
        epe_change_px=int8_epe - float_epe,
        calib_pairs=len(calibration),
        eval_pairs=len(held_out),
        preprocessed=preprocessed,
        float_nodes=float_nodes,
        threads=threads,
    )

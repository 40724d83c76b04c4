"""ONNX export: the graph ONNX Runtime runs reproduces PyTorch, and a failed check writes nothing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from stereodistill.deploy.onnx_export import (
    ExportError,
    export_onnx,
    int8_path,
    quantize_int8,
    rename_computed_tensors,
    require_runtime,
    synthetic_pairs,
)
from stereodistill.errors import ConfigError
from stereodistill.models import build_model

pytest.importorskip("onnxruntime", reason="the export extra is part of the dev install")


def pair(h: int = 32, w: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, h, w, generator=g), torch.rand(1, 3, h, w, generator=g)


@pytest.mark.parametrize(
    ("arch", "options"),
    [
        ("dsnet", {}),
        ("dsnet-noatt", {}),
        ("lean", {"guide": 2}),
        ("lean", {"census": 5}),
        ("lean", {"fine": 2}),
        ("lean", {"fine": 2, "fine_block": 5, "fine_polish": 2}),
        ("lean", {"fine": 2, "fine_block": 5, "fine_polish": 2, "fine_extremes": 9}),
    ],
)
def test_exported_graph_matches_pytorch_at_odd_size(tmp_path, arch, options):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = build_model(arch, max_disp=16, **options).eval()
    if options.get("guide"):  # its head starts at zero: make the warp and the residual count
        torch.nn.init.normal_(model.guided.head.weight, std=0.1)
    if options.get("fine"):  # the same for the fine refinement's offsets
        torch.nn.init.normal_(model.fine.head.weight, std=0.1)
    example = pair(30, 61)  # not a multiple of the network's: padding and cropping are in the graph
    check = export_onnx(model, tmp_path / "net.onnx", example, repeats=1, threads=1)
    assert check.max_abs_diff_px < 1e-2 and check.mean_abs_diff_px < 1e-4  # float32 summation order
    assert check.torch_ms > 0 and check.onnxruntime_ms > 0
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["left", "right"]
    other = pair(30, 61)[::-1]  # a different pair than the one it was checked on
    (out,) = session.run(None, {"left": other[0].numpy(), "right": other[1].numpy()})
    with torch.no_grad():
        expected = model(*other).disparity.numpy()
    assert out.shape == (1, 30, 61)
    np.testing.assert_allclose(out, expected, atol=1e-2)
    assert [p.name for p in tmp_path.iterdir()] == ["net.onnx"]


def test_a_graph_outside_tolerance_is_not_written(tmp_path):
    model = build_model("dsnet-noatt", max_disp=16).eval()
    with pytest.raises(ExportError, match="nothing was written"):
        export_onnx(model, tmp_path / "net.onnx", pair(), tolerance_px=-1.0, repeats=1, threads=1)
    assert list(tmp_path.iterdir()) == []


def test_a_graph_onnx_runtime_cannot_load_is_one_export_error(tmp_path, monkeypatch):
    import onnxruntime as ort

    def refuse(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Type Error: Type parameter (T) bound to different types")

    monkeypatch.setattr(ort, "InferenceSession", refuse)
    model = build_model("dsnet-noatt", max_disp=16).eval()
    with pytest.raises(
        ExportError, match=r"net.onnx: ONNX Runtime cannot load the exported graph \(\[ONNXRuntime.*nothing"
    ):
        export_onnx(model, tmp_path / "net.onnx", pair(), repeats=1, threads=1)
    assert list(tmp_path.iterdir()) == []


def test_missing_runtime_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=r"stereodistill\[export\]"):
        require_runtime()


def test_example_must_be_one_pair():
    with pytest.raises(ConfigError, match="1×3×H×W"):
        export_onnx(build_model("dsnet-noatt", max_disp=16), "unused.onnx", (torch.rand(2, 3, 32, 64),) * 2)


@pytest.fixture(scope="module")
def lean_graph(tmp_path_factory):
    """A checked float graph of lean-xs at 32×64, shared by the int8 tests (the export is the slow part)."""
    torch.manual_seed(0)
    model = build_model("lean-xs", max_disp=16).eval()
    path = tmp_path_factory.mktemp("float") / "student.onnx"
    example = synthetic_pairs(32, 64, 16, [0])[0][:2]
    export_onnx(model, path, example, repeats=1, threads=1)
    return model, path


def test_int8_graph_is_written_finite_and_scored(tmp_path, lean_graph):
    import onnx
    import onnxruntime as ort

    model, float_path = lean_graph
    calibration = [(left, right) for left, right, _ in synthetic_pairs(32, 64, 16, [(1, 0), (1, 1)])]
    held_out = synthetic_pairs(32, 64, 16, [(2, 0), (2, 1)])
    out = tmp_path / "student.int8.onnx"
    check = quantize_int8(model, float_path, out, calibration, held_out, repeats=1, threads=1)
    assert [p.name for p in tmp_path.iterdir()] == ["student.int8.onnx"]  # no temporary left behind
    assert check.onnx_int8 == str(out) and check.calib_pairs == 2 and check.eval_pairs == 2
    assert check.onnxruntime_float_ms > 0 and check.onnxruntime_int8_ms > 0
    assert check.speedup == pytest.approx(check.onnxruntime_float_ms / check.onnxruntime_int8_ms)
    assert check.preprocessed and check.float_nodes > 0  # the soft-argmin head stays in float
    epes = (check.torch_epe_px, check.float_epe_px, check.int8_epe_px)
    assert all(np.isfinite(e) and e >= 0 for e in epes)
    assert check.float_epe_px == pytest.approx(check.torch_epe_px, abs=1e-3)
    assert check.epe_change_px == pytest.approx(check.int8_epe_px - check.float_epe_px)
    assert set(check.to_dict()) >= {"onnxruntime_int8_ms", "int8_epe_px", "epe_change_px"}

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    left, right, _ = held_out[0]
    (disparity,) = session.run(None, {"left": left.numpy(), "right": right.numpy()})
    assert disparity.shape == (1, 32, 64) and np.isfinite(disparity).all()
    with torch.no_grad():
        reference = model(left, right).disparity.numpy()
    assert np.abs(disparity - reference).mean() < 1.0  # quantised, yet the same network


def test_a_non_finite_int8_graph_is_not_written(tmp_path, lean_graph, monkeypatch):
    import onnx
    import onnxruntime.quantization
    from onnx import TensorProto, helper

    def broken_quantiser(source, out, *args, **kwargs):  # a graph whose disparity is +inf everywhere
        nodes = [
            helper.make_node("ReduceSum", ["left", "axes"], ["sum"], keepdims=0),
            helper.make_node("Div", ["sum", "zero"], ["disparity"]),
        ]
        inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, 32, 64]) for name in ("left", "right")]
        output = helper.make_tensor_value_info("disparity", TensorProto.FLOAT, [1, 32, 64])
        constants = [helper.make_tensor("axes", TensorProto.INT64, [1], [1]), helper.make_tensor("zero", 1, [], [0.0])]
        graph = helper.make_graph(nodes, "broken", inputs, [output], initializer=constants)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), out)

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", broken_quantiser)
    model, float_path = lean_graph
    ((left, right, gt),) = synthetic_pairs(32, 64, 16, [(2, 0)])
    with pytest.raises(ExportError, match=r"non-finite.*nothing was written"):
        quantize_int8(model, float_path, tmp_path / "net.int8.onnx", [(left, right)], [(left, right, gt)], 1, 1)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_quantisation_is_one_export_error(tmp_path, lean_graph):
    model, float_path = lean_graph
    ((left, right, gt),) = synthetic_pairs(32, 64, 16, [(1, 0)])
    bad = left.clone()
    bad[..., 5, 7] = float("inf")  # calibrated on it, the graph cannot run (no finite range, NaN indices)
    with pytest.raises(ExportError, match=r"^[^\n]*int8 quantisation failed[^\n]*nothing was written$"):
        quantize_int8(model, float_path, tmp_path / "net.int8.onnx", [(bad, right)], [(left, right, gt)], 1, 1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("out", "expected"),
    [("student.onnx", "student.int8.onnx"), ("deploy/net.ONNX", "deploy/net.int8.onnx"), ("model", "model.int8.onnx")],
)
def test_int8_path_sits_beside_the_float_graph(out, expected):
    assert int8_path(out).as_posix() == expected


def test_computed_tensors_are_renamed_apart_from_weights_and_the_graph_is_unchanged(tmp_path, lean_graph):
    """ONNX Runtime's quantiser names the weights it creates from the exporter's counters; computed
    tensors get their own suffix so that such a name cannot be defined twice (it was, on ``lean``)."""
    import onnx
    import onnxruntime as ort

    _, float_path = lean_graph
    out = tmp_path / "renamed.onnx"
    rename_computed_tensors(float_path, out)
    before, after = onnx.load(str(float_path)).graph, onnx.load(str(out)).graph
    weights = {w.name for w in before.initializer}
    assert {w.name for w in after.initializer} == weights
    assert [v.name for v in after.input] == [v.name for v in before.input]
    assert [v.name for v in after.output] == [v.name for v in before.output]
    computed = [o for node in after.node for o in node.output if o not in {v.name for v in after.output}]
    assert computed and all(name.endswith("__t") and name not in weights for name in computed)
    assert len(computed) == len(set(computed))
    left, right = synthetic_pairs(32, 64, 16, [1])[0][:2]
    feeds = {"left": left.numpy(), "right": right.numpy()}
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (float_path, out)]
    first, second = (session.run(None, feeds)[0] for session in sessions)
    np.testing.assert_array_equal(first, second)

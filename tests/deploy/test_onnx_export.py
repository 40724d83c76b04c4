"""ONNX export: the graph ONNX Runtime runs reproduces PyTorch, and a failed check writes nothing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from stereodistill.deploy.onnx_export import ExportError, export_onnx, require_runtime
from stereodistill.errors import ConfigError
from stereodistill.models import build_model

pytest.importorskip("onnxruntime", reason="the export extra is part of the dev install")


def pair(h: int = 32, w: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, h, w, generator=g), torch.rand(1, 3, h, w, generator=g)


@pytest.mark.parametrize("arch", ["dsnet", "dsnet-noatt"])
def test_exported_graph_matches_pytorch_at_odd_size(tmp_path, arch):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = build_model(arch, max_disp=16).eval()
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


def test_missing_runtime_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=r"stereodistill\[export\]"):
        require_runtime()


def test_example_must_be_one_pair():
    with pytest.raises(ConfigError, match="1×3×H×W"):
        export_onnx(build_model("dsnet-noatt", max_disp=16), "unused.onnx", (torch.rand(2, 3, 32, 64),) * 2)

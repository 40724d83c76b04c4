import json

import pytest

from stereodistill.checkpoint import save_model
from stereodistill.cli.main import main
from stereodistill.models import build_model

pytest.importorskip("onnxruntime", reason="the export extra is part of the dev install")


def test_export_writes_checked_graph_and_reports_latencies(tmp_path, capsys):
    ckpt = save_model(tmp_path / "student", build_model("dsnet-noatt", max_disp=16).eval())
    out = tmp_path / "deploy" / "student.onnx"
    args = ["export", str(ckpt), "--onnx", str(out), "--size", "32x64", "--repeats", "1", "--threads", "1"]
    assert main([*args, "--json", str(tmp_path / "check.json")]) == 0
    printed = capsys.readouterr().out
    assert out.is_file()
    assert "ONNX Runtime vs PyTorch max |diff|" in printed and "PyTorch" in printed and " ms" in printed
    record = json.loads((tmp_path / "check.json").read_text())
    assert record["arch"] == "dsnet-noatt" and record["size"] == [32, 64]
    assert record["max_abs_diff_px"] < 1e-2 and record["onnxruntime_ms"] > 0


def test_export_of_a_missing_checkpoint_is_one_clear_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()

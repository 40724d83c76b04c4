import contextlib
import json

import numpy as np
import pytest

from stereodistill.checkpoint import save_model
from stereodistill.cli.main import main
from stereodistill.data.formats import write_image, write_pfm
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
    before = out.read_bytes()  # a refused export leaves the earlier file as it was, and says so
    assert main([*args, "--tolerance", "1e-30"]) == 2
    assert "nothing was written (the file already there is left as it was)" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_a_network_with_broken_weights_is_refused_as_one_not_as_a_nan_px_difference(tmp_path, capsys):
    import torch

    net = build_model("dsnet-noatt", max_disp=16).eval()
    with torch.no_grad():
        next(p for p in net.parameters() if p.dim() == 1)[0] = float("nan")
    ckpt = save_model(tmp_path / "broken", net)
    out = tmp_path / "broken.onnx"
    args = ["export", str(ckpt), "--onnx", str(out), "--size", "32x64", "--repeats", "1", "--threads", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "PyTorch's disparity is not finite (NaN or infinite) at" in err and "the network's weights are broken" in err
    assert "nan px" not in err
    assert not out.exists()


def test_export_int8_writes_both_graphs_and_reports_speed_and_epe(tmp_path, capsys):
    ckpt = save_model(tmp_path / "student", build_model("lean-xs", max_disp=16).eval())
    out = tmp_path / "deploy" / "student.onnx"
    args = ["export", str(ckpt), "--onnx", str(out), "--size", "32x64", "--repeats", "1", "--threads", "1"]
    args += ["--int8", "--calib-pairs", "2", "--eval-pairs", "2", "--json", str(tmp_path / "check.json")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["student.int8.onnx", "student.onnx"]
    assert "int8 EPE change: " in printed and "speed-up" in printed
    record = json.loads((tmp_path / "check.json").read_text())
    assert record["max_abs_diff_px"] < 1e-2  # the float check, as without --int8
    int8 = record["int8"]
    assert int8["onnx_int8"] == str(tmp_path / "deploy" / "student.int8.onnx")
    assert int8["onnxruntime_int8_ms"] > 0 and int8["onnxruntime_float_ms"] > 0 and int8["speedup"] > 0
    assert int8["calib_pairs"] == 2 and int8["eval_pairs"] == 2
    for key in ("torch_epe_px", "float_epe_px", "int8_epe_px"):
        assert int8[key] >= 0
    assert int8["epe_change_px"] == pytest.approx(int8["int8_epe_px"] - int8["float_epe_px"])
    assert f"int8 EPE change: {int8['epe_change_px']:+.3f} px" in printed
    float_only = ["export", str(ckpt), "--onnx", str(out), "--size", "32x48", "--repeats", "1", "--threads", "1"]
    assert main([*float_only, "--calib-pairs", "2"]) == 2  # settings of a graph it would not make
    captured = capsys.readouterr()
    assert captured.err == "stereodistill: error: --calib-pairs: for the int8 graph, which only --int8 makes\n"
    assert main(float_only) == 0  # the float graph replaced; the int8 one beside it is now another graph's
    warning = f"warning: {out.parent / 'student.int8.onnx'} beside it is from an earlier export, not from this graph"
    assert warning in capsys.readouterr().err


def test_export_of_a_missing_checkpoint_is_one_clear_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_outputs_that_would_replace_the_inputs_are_refused_before_any_work(tmp_path, capsys):
    """eval/bench/export never write over the checkpoint or the list they read (a run's checkpoint is
    ``…/model``, so ``--json …/model.json`` is an easy slip)."""
    ckpt = save_model(tmp_path / "s", build_model("lean-xs", max_disp=16)).with_suffix("")
    weights, info = ckpt.with_suffix(".safetensors").read_bytes(), ckpt.with_suffix(".json").read_text()
    commands = [
        (["export", str(ckpt), "--onnx", f"{ckpt}.safetensors", "--size", "32x64"], "--onnx"),
        (["export", str(ckpt), "--onnx", str(tmp_path / "o.onnx"), "--json", f"{ckpt}.json"], "--json"),
        (["bench", "--models", f"{ckpt},lean-xs", "--size", "32x64", "--json", f"{ckpt}.json"], "--json"),
        (["eval", str(ckpt), "--list", str(tmp_path / "p.csv"), "--json", f"{ckpt}.json"], "--json"),
        (["export", str(ckpt), "--onnx", str(tmp_path / "o.onnx"), "--json", str(tmp_path / "o.onnx")], "--json"),
        (["eval", str(ckpt), "--list", str(tmp_path / "p.csv"), "--json", str(tmp_path / "gt.pfm")], "--json"),
        (["export", str(ckpt), "--onnx", str(tmp_path / "o.onnx"), "--tolerance", "nan"], "--tolerance"),
        (["bench", "--models", ",", "--size", "32x64"], "no network named"),
        (["bench", "--models", "lean-xs", "--warmup", "-3"], "--warmup"),
    ]
    rng = np.random.default_rng(0)
    for name in ("l.png", "r.png"):
        write_image(tmp_path / name, rng.random((32, 64, 3)))
    write_pfm(tmp_path / "gt.pfm", np.ones((32, 64), np.float32))
    (tmp_path / "p.csv").write_text("left,right,disp\nl.png,r.png,gt.pfm\n")
    truth = (tmp_path / "gt.pfm").read_bytes()
    for command, named in commands:
        usage_error = "--tolerance" in command or "--warmup" in command  # argparse's own exit
        with pytest.raises(SystemExit) if usage_error else contextlib.nullcontext():
            assert main(command) == 2
        assert named in capsys.readouterr().err, command
    assert ckpt.with_suffix(".safetensors").read_bytes() == weights and ckpt.with_suffix(".json").read_text() == info
    assert not (tmp_path / "o.onnx").exists() and (tmp_path / "gt.pfm").read_bytes() == truth


def test_a_size_too_small_for_the_check_pair_is_refused_before_exporting(tmp_path, capsys):
    ckpt = save_model(tmp_path / "m", build_model("lean-xs", max_disp=16))
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "m.onnx"), "--size", "4x4"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "stereodistill: error: --size 4x4: export checks its graph on an 8x8 pair at least\n"
    assert "exporting" not in captured.out

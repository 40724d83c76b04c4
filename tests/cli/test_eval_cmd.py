import json

import numpy as np
import pytest
import torch
from PIL import Image

from stereodistill.checkpoint import save_model
from stereodistill.cli.main import main
from stereodistill.data.formats import write_image, write_pfm
from stereodistill.models import build_model


def _checkpoint(tmp_path):
    return str(save_model(tmp_path / "net", build_model("dsnet", max_disp=16).eval()))


def test_eval_on_a_dataset_prints_pooled_and_per_image_and_writes_json(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    main(
        [
            "data",
            "synth",
            "--out",
            str(tmp_path / "s"),
            "--pairs",
            "2",
            "--size",
            "32x64",
            "--max-disp",
            "16",
            "--split",
            "test",
        ]
    )
    out_json = tmp_path / "m.json"
    assert main(["eval", ckpt, "--dataset", "sceneflow", "--root", str(tmp_path / "s"), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "pooled" in out and "per-image mean" in out and "2 images" in out
    result = json.loads(out_json.read_text())
    assert set(result["pooled"]) == {"epe", "d1", "bad0.5", "bad1", "bad2", "bad3"}
    assert len(result["per_image"]) == 2 and result["max_disp"] == 16
    assert 0 <= result["pooled"]["bad1"] <= 1


def _pairs(tmp_path, broken: bool):
    rng = np.random.default_rng(0)
    rows = ["left,right,disp"]
    for i in range(2):
        write_image(tmp_path / f"l{i}.png", rng.random((32, 64, 3)))
        write_image(tmp_path / f"r{i}.png", rng.random((32, 64, 3)))
        write_pfm(tmp_path / f"d{i}.pfm", np.full((32, 64), 5.0, np.float32))
        rows.append(f"l{i}.png,r{i}.png,d{i}.pfm")
    if broken:
        (tmp_path / "d1.pfm").write_bytes(b"Pf\n64 32\n-1.0\n" + bytes(10))
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    return str(tmp_path / "pairs.csv")


def test_a_broken_sample_stops_the_run_naming_it_unless_skip_bad(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    csv = _pairs(tmp_path, broken=True)
    assert main(["eval", ckpt, "--list", csv, "--json", str(tmp_path / "m.json")]) == 2
    assert "d1.pfm" in capsys.readouterr().err and not (tmp_path / "m.json").exists()
    assert main(["eval", ckpt, "--list", csv, "--skip-bad", "--json", str(tmp_path / "m.json")]) == 0
    assert "SKIPPED" in capsys.readouterr().out
    result = json.loads((tmp_path / "m.json").read_text())
    assert len(result["per_image"]) == 1 and len(result["skipped"]) == 1


def test_eval_argument_errors(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    assert main(["eval", ckpt]) == 2
    assert "either --dataset" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nope"), "--list", _pairs(tmp_path, broken=False)]) == 2
    assert "checkpoint does not exist" in capsys.readouterr().err
    (tmp_path / "metrics").mkdir()
    assert main(["eval", ckpt, "--list", _pairs(tmp_path, broken=False), "--json", str(tmp_path / "metrics")]) == 2
    assert "metrics: is a folder; name the file to write" in capsys.readouterr().err


def test_outputs_are_written_with_the_usual_permissions_and_never_onto_a_folder(tmp_path):
    import os
    import stat

    from stereodistill.fileio import write_text_atomic

    umask = os.umask(0o022)
    try:
        weights = save_model(tmp_path / "m", build_model("lean-xs", max_disp=16))  # safetensors recreates its file
        write_text_atomic(tmp_path / "t.txt", "x")
    finally:
        os.umask(umask)
    for path in (weights, tmp_path / "m.json", tmp_path / "t.txt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder") as raised:
        write_text_atomic(tmp_path / "folder", "x")
    assert raised.value.filename == str(tmp_path / "folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "m.json", "m.safetensors", "t.txt"]  # no temp file


def _strict_json(path):
    """Parse as strict JSON: NaN or Infinity tokens are an error."""

    def refuse(token):
        raise AssertionError(f"{path} holds the non-JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_split_without_ground_truth_is_an_error_not_a_nan_table(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    rng = np.random.default_rng(0)
    for side in ("image_2", "image_3"):
        for i in range(3):
            write_image(tmp_path / "kitti" / "testing" / side / f"{i:06d}_10.png", rng.random((32, 64, 3)))
    root = str(tmp_path / "kitti")
    assert main(["eval", ckpt, "--dataset", "kitti2015", "--root", root, "--split", "test"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none of the 3 pairs of kitti2015" in err and "split test" in err
    assert "has ground truth" in err
    # By default, eval reads the split with ground truth (KITTI's training folder): here, none exists.
    assert main(["eval", ckpt, "--dataset", "kitti2015", "--root", root]) == 2
    assert "split 'train'" in capsys.readouterr().err


def test_eval_json_is_strict_and_rows_name_their_files(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    csv = _pairs(tmp_path, broken=False)
    # The second pair's ground truth lies beyond the evaluated range: its per-image metrics are
    # undefined, and must be written as null.
    write_pfm(tmp_path / "d1.pfm", np.full((32, 64), 40.0, np.float32))
    assert main(["eval", ckpt, "--list", csv, "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert f"on pairs ({csv}): 2 images, 1 with valid ground truth" in out and "split" not in out
    result = _strict_json(tmp_path / "m.json")
    rows = {row["id"]: row for row in result["per_image"]}
    assert len(rows) == 2 and all(row["left"].endswith(".png") for row in rows.values())
    assert sorted(row["epe"] is None for row in rows.values()) == [False, True]
    assert result["split"] is None

    assert main(["eval", ckpt, "--list", csv, "--limit", "1"]) == 0
    assert "1 image," in capsys.readouterr().out


def test_a_diverged_network_is_told_from_an_undefined_score_in_the_json(tmp_path, capsys):
    model = build_model("lean", max_disp=16).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    ckpt = str(save_model(tmp_path / "nan", model))
    csv = _pairs(tmp_path, broken=False)
    assert main(["eval", ckpt, "--list", csv, "--json", str(tmp_path / "m.json")]) == 0
    assert "predicted 4096 scored pixel(s) as NaN or infinite" in capsys.readouterr().err
    result = _strict_json(tmp_path / "m.json")
    assert result["pooled"]["epe"] is None and result["nonfinite_pixels"] == 4096
    assert [row["n_nonfinite"] for row in result["per_image"]] == [2048, 2048]
    assert main(["eval", _checkpoint(tmp_path), "--list", csv, "--json", str(tmp_path / "ok.json")]) == 0
    assert "NaN" not in capsys.readouterr().err and _strict_json(tmp_path / "ok.json")["nonfinite_pixels"] == 0


def test_eval_refuses_a_bad_range_and_an_evaluation_of_nothing(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    csv = _pairs(tmp_path, broken=False)
    with pytest.raises(SystemExit) as info:  # a usage error, as in every command
        main(["eval", ckpt, "--list", csv, "--max-disp=-4"])
    assert info.value.code == 2 and "expected a positive number of pixels" in capsys.readouterr().err
    assert main(["eval", ckpt, "--list", csv, "--max-disp", "2"]) == 2  # every ground truth is 5 px
    assert "no image of pairs" in capsys.readouterr().err
    for i in range(2):
        (tmp_path / f"l{i}.png").write_bytes(b"not a png")
    assert main(["eval", ckpt, "--list", csv, "--skip-bad", "--json", str(tmp_path / "m.json")]) == 2
    assert "every sample of pairs" in capsys.readouterr().err and not (tmp_path / "m.json").exists()


def test_eval_says_how_much_ground_truth_it_leaves_out_and_warns_beyond_a_tenth(tmp_path, capsys):
    from stereodistill.data.motorcycle import write_motorcycle

    ckpt = _checkpoint(tmp_path)  # max disparity 16
    csv = str(write_motorcycle(tmp_path / "moto", factor=4))  # 125×185, ground truth below 15 px
    assert main(["eval", ckpt, "--list", csv, "--json", str(tmp_path / "m.json")]) == 0
    captured = capsys.readouterr()
    assert "left out: 0 at or beyond 16 px, 0 occluded (0.0 %)" in captured.out and "warning" not in captured.err
    coverage = _strict_json(tmp_path / "m.json")["ground_truth"]
    assert coverage["left_out"] == 0 and coverage["with_gt"] > 20_000
    assert main(["eval", ckpt, "--list", csv, "--max-disp", "8", "--json", str(tmp_path / "m.json")]) == 0
    captured = capsys.readouterr()
    assert (
        "at or beyond 8 px" in captured.out
        and "warning: more than 10% of the ground-truth pixels lie at or beyond 8 px" in captured.err
    )
    assert main(["eval", ckpt, "--list", csv, "--max-disp", "24"]) == 0
    assert "above dsnet's range (16 px)" in capsys.readouterr().err
    # Occluded pixels (a mask's 128) are left out too, but no scale brings them back: no warning for them.
    occluded = np.full((32, 64), 128, np.uint8)
    occluded[:, :16] = 255
    Image.fromarray(occluded).save(tmp_path / "mask.png")
    _pairs(tmp_path, broken=False)
    text = (tmp_path / "pairs.csv").read_text().replace("left,right,disp", "left,right,disp,mask")
    (tmp_path / "pairs.csv").write_text(text.replace(".pfm\n", ".pfm,mask.png\n"))
    assert main(["eval", ckpt, "--list", str(tmp_path / "pairs.csv")]) == 0
    captured = capsys.readouterr()
    assert "3,072 occluded (75.0 %)" in captured.out and "warning" not in captured.err


def test_list_means_the_samples_with_a_dataset_too(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    synth = ["data", "synth", "--out", str(tmp_path / "s"), "--pairs", "3", "--size", "32x64", "--max-disp", "16"]
    assert main([*synth, "--split", "test"]) == 0
    first = sorted((tmp_path / "s").rglob("left/*.png"))[0]
    (tmp_path / "one.txt").write_text(f"{first.parent.parent.name}/left/{first.name}\n")
    root = str(tmp_path / "s")
    assert main(["eval", ckpt, "--dataset", "sceneflow", "--root", root, "--list", str(tmp_path / "one.txt")]) == 0
    assert "1 image," in capsys.readouterr().out


def test_an_output_that_cannot_be_written_is_refused_before_the_evaluation(tmp_path, capsys, monkeypatch):
    ckpt = _checkpoint(tmp_path)
    main(["data", "synth", "--out", str(tmp_path / "s"), "--pairs", "1", "--size", "32x64", "--max-disp", "16"])
    (tmp_path / "file").write_text("a file, not a folder")
    args = ["eval", ckpt, "--dataset", "sceneflow", "--root", str(tmp_path / "s"), "--split", "train"]
    capsys.readouterr()
    assert main([*args, "--json", str(tmp_path / "file" / "sub" / "m.json")]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"stereodistill: error: {tmp_path / 'file' / 'sub' / 'm.json'}: cannot be written "
        f"({tmp_path / 'file'} is a file, not a folder)\n"
    )
    assert "pooled" not in captured.out  # refused before the work, not after it

    def refuse(*args, **kwargs):  # a folder that takes no new file (read-only, immutable)
        raise PermissionError(1, "Operation not permitted", str(tmp_path / ".m.json.abc.tmp.json"))

    monkeypatch.setattr("stereodistill.fileio.tempfile.mkstemp", refuse)
    assert main([*args, "--json", str(tmp_path / "m.json")]) == 2
    captured = capsys.readouterr()
    assert f"{tmp_path / 'm.json'}: cannot be written (Operation not permitted)" in captured.err
    assert "pooled" not in captured.out

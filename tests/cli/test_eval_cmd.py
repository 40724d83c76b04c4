import json

import numpy as np

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
    assert "metadata is missing" in capsys.readouterr().err

import numpy as np
import pytest
from PIL import Image

from stereodistill.checkpoint import save_model
from stereodistill.cli.main import main
from stereodistill.data.formats import read_pfm, read_png_disparity, write_image
from stereodistill.models import build_model
from stereodistill.report.colormap import colorize


@pytest.fixture
def ckpt(tmp_path):
    return str(save_model(tmp_path / "net", build_model("dsnet", max_disp=16).eval()))


def test_infer_any_size_writes_pfm_png16_and_colour(tmp_path, ckpt):
    rng = np.random.default_rng(0)
    write_image(tmp_path / "left.png", rng.random((30, 61, 3)))
    write_image(tmp_path / "right.png", rng.random((30, 61, 3)))
    assert (
        main(["infer", ckpt, str(tmp_path / "left.png"), str(tmp_path / "right.png"), "--out", str(tmp_path / "o")])
        == 0
    )
    disp = read_pfm(tmp_path / "o" / "left.pfm")
    assert disp.shape == (30, 61)  # padding cropped back exactly
    np.testing.assert_allclose(read_png_disparity(tmp_path / "o" / "left_disp16.png"), disp, atol=1 / 256 + 1e-6)
    assert Image.open(tmp_path / "o" / "left_color.png").size == (61, 30)


def test_infer_folders_pair_by_name(tmp_path, ckpt):
    rng = np.random.default_rng(1)
    for side in ("L", "R"):
        for name in ("a.png", "b.png"):
            write_image(tmp_path / side / name, rng.random((32, 64, 3)))
    assert main(["infer", ckpt, str(tmp_path / "L"), str(tmp_path / "R"), "--out", str(tmp_path / "o")]) == 0
    assert {p.name for p in (tmp_path / "o").glob("*.pfm")} == {"a.pfm", "b.pfm"}


def test_bad_inputs_are_clear_and_leave_nothing_behind(tmp_path, ckpt, capsys):
    rng = np.random.default_rng(2)
    write_image(tmp_path / "l.png", rng.random((32, 64, 3)))
    write_image(tmp_path / "r.png", rng.random((32, 60, 3)))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "o"
    assert main(["infer", ckpt, str(tmp_path / "l.png"), str(tmp_path / "r.png"), "--out", str(out)]) == 2
    assert "64x32" in capsys.readouterr().err
    assert main(["infer", ckpt, str(tmp_path / "l.png"), str(tmp_path / "bad.png"), "--out", str(out)]) == 2
    assert "bad.png" in capsys.readouterr().err
    assert main(["infer", str(tmp_path / "l.png"), str(tmp_path / "l.png"), str(tmp_path / "l.png")]) == 2
    assert "checkpoint" in capsys.readouterr().err
    assert not out.exists()


def test_colormap_is_monotone_in_brightness_order_and_masks_invalid():
    rgb = colorize(np.array([[0.0, 8.0, 16.0, np.nan]]), vmax=16.0)
    assert rgb.shape == (1, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert not np.allclose(rgb[0, 0], rgb[0, 2])
    assert (rgb[0, 3] == 0).all()

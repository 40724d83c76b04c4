import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from stereodistill.checkpoint import save_model
from stereodistill.cli.main import main
from stereodistill.data.formats import read_pfm, read_png_disparity, write_image
from stereodistill.errors import InputError
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
    width, height = Image.open(tmp_path / "o" / "left_color.png").size
    assert width == 61 and height > 30  # the map, then its colour bar and range


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
    assert "32x64 (HxW)" in capsys.readouterr().err
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


def test_infer_takes_scene_trees_by_glob_and_names_outputs_by_scene(tmp_path, ckpt, capsys):
    rng = np.random.default_rng(3)
    for scene in ("Adirondack", "Piano"):
        for view in ("im0.png", "im1.png"):
            write_image(tmp_path / "mb" / scene / view, rng.random((32, 64, 3)))
    left, right = str(tmp_path / "mb" / "*" / "im0.png"), str(tmp_path / "mb" / "*" / "im1.png")
    assert main(["infer", ckpt, left, right, "--out", str(tmp_path / "o")]) == 0
    assert {p.name for p in (tmp_path / "o").glob("*.pfm")} == {"Adirondack.pfm", "Piano.pfm"}
    assert "[2/2] Piano" in capsys.readouterr().out
    # Resumable: pairs whose outputs exist are skipped.
    assert main(["infer", ckpt, left, right, "--out", str(tmp_path / "o")]) == 0
    assert "skipping 2 of 2 pairs" in capsys.readouterr().out
    assert main(["infer", ckpt, left, str(tmp_path / "mb" / "Piano" / "im1.png")]) == 2
    assert "two glob patterns, or neither" in capsys.readouterr().err
    # Outputs of the same name from another pair, network or scale are never taken for this one's.
    piano = [str(tmp_path / "mb" / "Piano" / view) for view in ("im0.png", "im1.png")]
    adirondack = [str(tmp_path / "mb" / "Adirondack" / view) for view in ("im0.png", "im1.png")]
    assert main(["infer", ckpt, *piano, "--out", str(tmp_path / "one")]) == 0
    for other in ([ckpt, *adirondack], [ckpt, *piano, "--scale", "0.5"], ["sgbm", *piano]):
        assert main(["infer", *other, "--out", str(tmp_path / "one")]) == 2
        err = capsys.readouterr().err
        assert "was made from another" in err and "contents" not in err  # another file: its stamp is no news
    assert main(["infer", ckpt, *adirondack, "--out", str(tmp_path / "one"), "--overwrite"]) == 0
    assert main(["infer", ckpt, *adirondack, "--out", str(tmp_path / "one")]) == 0  # now this pair's: skipped
    assert "skipping 1 of 1" in capsys.readouterr().out
    # A new recording under the same file names is another pair: refused, not skipped as done.
    write_image(tmp_path / "mb" / "Adirondack" / "im0.png", rng.random((32, 64, 3)))
    assert main(["infer", ckpt, *adirondack, "--out", str(tmp_path / "one")]) == 2
    assert "im0.pfm was made from another left view's contents (" in (err := capsys.readouterr().err)
    assert "Adirondack/im0.png was rewritten since)" in err
    scenes = [str(tmp_path / "mb" / "*" / view) for view in ("im0.png", "im1.png")]
    assert main(["infer", ckpt, *scenes, "--out", str(tmp_path / "mb" / "Adirondack")]) == 2
    assert "is a folder of input images" in capsys.readouterr().err
    assert main(["infer", ckpt, *adirondack, "--out", str(tmp_path / "mb" / "Adirondack")]) == 0  # two named files


def test_scale_resizes_the_inputs_and_brings_disparities_back_to_their_pixels(tmp_path, ckpt, monkeypatch):
    from stereodistill.cli import infer_cmd

    class Half:  # a network that sees the half-size pair and answers "3 px" everywhere
        max_disp = 16

        def __call__(self, left, right):
            assert left.shape[-2:] == (16, 32)
            return type("Out", (), {"disparity": left.new_full((1, 16, 32), 3.0)})()

    image = np.random.default_rng(4).random((32, 64, 3)).astype(np.float32)
    disparity = infer_cmd.predict(Half(), image, image, 0.5, "cpu")
    assert disparity.shape == (32, 64) and np.allclose(disparity, 6.0)
    assert main(["infer", ckpt, "a.png", "b.png", "--scale", "0"]) == 2
    with pytest.raises(InputError, match=r"^a.png: --scale 0.01 makes its views 1x1 px, too small to match"):
        infer_cmd.predict(Half(), image, image, 0.01, "cpu", where="a.png")


def test_a_network_answering_nan_writes_nothing_and_says_so(tmp_path, capsys):
    net = build_model("dsnet", max_disp=16).eval()
    with torch.no_grad():
        next(p for p in net.parameters() if p.dim() == 1)[0] = float("nan")  # one broken weight
    save_model(tmp_path / "broken", net)
    rng = np.random.default_rng(8)
    write_image(tmp_path / "l.png", rng.random((32, 64, 3)))
    write_image(tmp_path / "r.png", rng.random((32, 64, 3)))
    out = tmp_path / "o"
    assert (
        main(["infer", str(tmp_path / "broken"), str(tmp_path / "l.png"), str(tmp_path / "r.png"), "--out", str(out)])
        == 2
    )
    assert "l.png: the network's disparity is not finite (NaN or infinite) at" in capsys.readouterr().err
    assert not list(out.glob("*.pfm")) and not list(out.glob("*_disp16.png"))


def _video(path, frames, faststart=False):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    more = {"output_params": ["-movflags", "+faststart"]} if faststart else {}  # the header first, as streamed
    with imageio.get_writer(str(path), format="FFMPEG", fps=10, macro_block_size=2, **more) as writer:
        for frame in frames:
            writer.append_data((frame * 255).astype(np.uint8))


def test_infer_on_a_stereo_video_two_files_or_side_by_side(tmp_path, ckpt, capsys):
    imageio = pytest.importorskip("imageio.v2")
    rng = np.random.default_rng(5)
    lefts = [rng.random((32, 64, 3)) for _ in range(4)]
    rights = [np.roll(frame, -2, axis=1) for frame in lefts]
    _video(tmp_path / "left.mp4", lefts)
    _video(tmp_path / "right.mp4", rights)
    _video(tmp_path / "sbs.mp4", [np.concatenate([a, b], axis=1) for a, b in zip(lefts, rights, strict=True)])
    out = str(tmp_path / "o")
    assert main(["infer", ckpt, str(tmp_path / "left.mp4"), str(tmp_path / "right.mp4"), "--out", out]) == 0
    assert "4 frames (10 fps" in capsys.readouterr().out
    assert len(list((tmp_path / "o" / "left_frames").glob("*_disp16.png"))) == 4
    frames = [frame for frame in imageio.get_reader(str(tmp_path / "o" / "left_disparity.mp4"), format="FFMPEG")]
    assert len(frames) == 4 and frames[0].shape[1] == 64 and frames[0].shape[0] > 32  # with its colour bar
    assert main(["infer", ckpt, str(tmp_path / "sbs.mp4"), "--side-by-side", "--out", out]) == 0
    assert read_png_disparity(tmp_path / "o" / "sbs_frames" / "000003_disp16.png").shape == (32, 64)
    assert main(["infer", ckpt, str(tmp_path / "left.mp4"), str(tmp_path / "right.mp4"), "--out", out]) == 0
    assert "nothing to do" in capsys.readouterr().out  # resumable
    (tmp_path / "short").mkdir()
    _video(tmp_path / "short" / "left.mp4", lefts[:2])  # the same name, fewer frames, redone
    _video(tmp_path / "short" / "right.mp4", rights[:2])
    command = ["infer", ckpt, *(str(tmp_path / "short" / f"{v}.mp4") for v in ("left", "right")), "--out", out]
    assert main([*command, "--overwrite"]) == 0
    assert len(list((tmp_path / "o" / "left_frames").glob("*_disp16.png"))) == 2  # no frame of the old video stays
    assert main(["infer", ckpt, str(tmp_path / "left.mp4"), str(tmp_path / "right.mp4"), "--out", out]) == 2
    assert "left_disparity.mp4 was made from another left view, right view" in capsys.readouterr().err  # not done
    assert main(["infer", ckpt, str(tmp_path / "sbs.mp4"), "--out", out]) == 2
    assert "side-by-side" in capsys.readouterr().err


def test_infer_sets_the_range_of_a_classical_method_only(tmp_path, ckpt, capsys):
    pytest.importorskip("cv2")
    rng = np.random.default_rng(2)
    for name in ("l.png", "r.png"):
        write_image(tmp_path / name, rng.random((24, 48, 3)))
    pair = [str(tmp_path / "l.png"), str(tmp_path / "r.png")]
    assert main(["infer", "sgbm", *pair, "--out", str(tmp_path / "o"), "--max-disp", "16"]) == 0
    assert read_pfm(tmp_path / "o" / "l.pfm").shape == (24, 48)
    assert main(["infer", ckpt, *pair, "--out", str(tmp_path / "p"), "--max-disp", "16"]) == 2
    assert "has its own" in capsys.readouterr().err


def test_a_damaged_record_of_earlier_outputs_is_named_not_a_traceback(tmp_path, ckpt, capsys):
    rng = np.random.default_rng(3)
    write_image(tmp_path / "l.png", rng.random((32, 64, 3)))
    write_image(tmp_path / "r.png", rng.random((32, 64, 3)))
    out = tmp_path / "o"
    args = ["infer", ckpt, str(tmp_path / "l.png"), str(tmp_path / "r.png"), "--out", str(out)]
    assert main(args) == 0
    for damage, problem in (("{bad", "not valid JSON"), ('{"l": 5}', "its entry in infer.json is damaged (5)")):
        (out / "infer.json").write_text(damage)
        assert main(args) == 2
        err = capsys.readouterr().err
        assert problem in err and "--overwrite" in err and "Traceback" not in err
    assert main([*args, "--overwrite"]) == 0


def test_a_video_that_ends_before_its_header_says_is_named_in_a_warning(tmp_path, ckpt, capsys):
    pytest.importorskip("imageio.v2")
    rng = np.random.default_rng(6)
    _video(tmp_path / "full.mp4", [rng.random((32, 128, 3)) for _ in range(40)], faststart=True)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # its header (first) still says 40 frames
    out = str(tmp_path / "o")
    assert main(["infer", ckpt, str(tmp_path / "full.mp4"), "--side-by-side", "--out", out]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["infer", ckpt, str(tmp_path / "cut.mp4"), "--side-by-side", "--out", out]) == 0
    captured = capsys.readouterr()
    made = int(captured.out.split(" frames (")[0].split()[-1])
    assert 0 < made < 39
    assert f"warning: {tmp_path / 'cut.mp4'}: read {made} of the 40 frames its header announces" in captured.err
    lefts = [rng.random((32, 64, 3)) for _ in range(6)]
    _video(tmp_path / "l.mp4", lefts)
    _video(tmp_path / "r.mp4", lefts[:3])
    assert main(["infer", ckpt, str(tmp_path / "l.mp4"), str(tmp_path / "r.mp4"), "--out", out]) == 0
    assert "announce different lengths" in capsys.readouterr().err
    views = [rng.random((32, 64, 3)) for _ in range(40)]
    _video(tmp_path / "left.mp4", views, faststart=True)
    _video(tmp_path / "right.mp4", views, faststart=True)
    data = (tmp_path / "right.mp4").read_bytes()
    (tmp_path / "right.mp4").write_bytes(data[: len(data) // 2])  # only the right one cut: only it is named
    assert main(["infer", ckpt, str(tmp_path / "left.mp4"), str(tmp_path / "right.mp4"), "--out", out]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {tmp_path / 'right.mp4'}: read ")


def test_a_video_whose_audio_track_outlasts_its_frames_is_not_called_cut_short(tmp_path, ckpt, capsys):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    rng = np.random.default_rng(7)
    _video(tmp_path / "silent.mp4", [rng.random((32, 128, 3)) for _ in range(5)])
    sound = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "silent.mp4")]
    sound += ["-f", "lavfi", "-i", "sine=duration=10", "-c:v", "copy", "-c:a", "aac", str(tmp_path / "sound.mp4")]
    subprocess.run(sound, check=True)  # 0.5 s of frames beside 10 s of sound: the file lasts 10 s
    assert main(["infer", ckpt, str(tmp_path / "sound.mp4"), "--side-by-side", "--out", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert "5 frames (10 fps" in captured.out and "warning" not in captured.err


def test_disparities_a_16_bit_png_cannot_hold_are_written_as_no_data_with_a_warning(tmp_path, capsys):
    pytest.importorskip("cv2")
    from scipy.ndimage import gaussian_filter

    texture = gaussian_filter(np.random.default_rng(8).random((48, 1000)), 1.0)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    write_image(tmp_path / "l.png", np.repeat(texture[:, :700, None], 3, axis=2))  # the scene 300 px to the right
    write_image(tmp_path / "r.png", np.repeat(texture[:, 300:, None], 3, axis=2))
    out = tmp_path / "o"
    args = ["infer", "sgbm", str(tmp_path / "l.png"), str(tmp_path / "r.png"), "--out", str(out)]
    assert main([*args, "--max-disp", "320"]) == 0
    pfm, png = read_pfm(out / "l.pfm"), read_png_disparity(out / "l_disp16.png")
    far = pfm >= 256
    assert np.median(pfm[:, 400:]) == pytest.approx(300, abs=1) and far.sum() > 1000
    assert (png[far] == 0).all()  # "no data", not 255.996 px read as a measurement
    near = (pfm > 0) & ~far
    np.testing.assert_allclose(png[near], pfm[near], atol=1 / 256)
    err = capsys.readouterr().err
    assert f"warning: {out / 'l_disp16.png'}: {int(far.sum())} pixels have a disparity of 256 px or more" in err
    assert f"{out / 'l.pfm'} holds them" in err
    frame = np.concatenate(
        [np.repeat(texture[:, :700, None], 3, axis=2), np.repeat(texture[:, 300:, None], 3, axis=2)], 1
    )
    _video(tmp_path / "far.mp4", [frame, frame])
    video = ["infer", "sgbm", str(tmp_path / "far.mp4"), "--side-by-side", "--out", str(out), "--max-disp", "320"]
    assert main(video) == 0
    frames = [read_png_disparity(out / "far_frames" / f"00000{i}_disp16.png") for i in (0, 1)]
    assert all((f[:, 400:] == 0).mean() > 0.5 for f in frames)
    assert f"warning: {out / 'far_frames'}: " in capsys.readouterr().err


def test_an_output_folder_that_is_a_file_or_a_broken_link_is_named_before_any_work(tmp_path, ckpt, capsys):
    rng = np.random.default_rng(9)
    write_image(tmp_path / "l.png", rng.random((32, 64, 3)))
    write_image(tmp_path / "r.png", rng.random((32, 64, 3)))
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "dead").symlink_to(tmp_path / "gone")
    for out, problem in (("afile", "is a file, not a folder"), ("dead", "is a broken link")):
        out = tmp_path / out
        assert main(["infer", ckpt, str(tmp_path / "l.png"), str(tmp_path / "r.png"), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err == f"stereodistill: error: {out / 'infer.json'}: cannot be written ({out} {problem})\n"
    assert (tmp_path / "afile").read_text() == "mine"
    assert not (tmp_path / "gone").exists() and not list(tmp_path.glob("*infer*"))

"""Pairing a user's left and right images: files, folders by name, glob patterns by scene."""

import pytest

from stereodistill.data.pairing import find_pairs
from stereodistill.errors import DataError, InputError


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_folders_pair_by_file_name_and_name_outputs_by_stem(tmp_path):
    for name in ("a.png", "b.jpg"):
        touch(tmp_path / "L" / name), touch(tmp_path / "R" / name)
    touch(tmp_path / "L" / "notes.txt")
    pairs = find_pairs(tmp_path / "L", tmp_path / "R")
    assert [(p.name, p.left.name, p.right.parent.name) for p in pairs] == [("a", "a.png", "R"), ("b", "b.jpg", "R")]
    (tmp_path / "R" / "b.jpg").unlink()
    with pytest.raises(DataError, match=r"no right image for b\.jpg"):
        find_pairs(tmp_path / "L", tmp_path / "R")


def test_glob_patterns_pair_by_what_their_wildcards_match(tmp_path):
    for scene in ("s1", "s2", "s3"):
        touch(tmp_path / scene / "im0.png")
        if scene != "s3":
            touch(tmp_path / scene / "im1.png")
    with pytest.raises(InputError, match=r"no file of .*im1.png' goes with .*s3/im0.png"):
        find_pairs(f"{tmp_path}/*/im0.png", f"{tmp_path}/*/im1.png")
    touch(tmp_path / "s4" / "im1.png")  # as many files on each side, but s3 and s4 are not one scene
    with pytest.raises(InputError, match=r"goes with .*s3/im0.png"):
        find_pairs(f"{tmp_path}/*/im0.png", f"{tmp_path}/*/im1.png")
    touch(tmp_path / "s3" / "im1.png"), touch(tmp_path / "s4" / "im0.png")
    pairs = find_pairs(f"{tmp_path}/*/im0.png", f"{tmp_path}/*/im1.png")
    assert [(p.name, p.left.parent.name, p.right.parent.name) for p in pairs] == [
        (s, s, s) for s in ("s1", "s2", "s3", "s4")
    ]
    for frame in ("b", "a"):  # one folder, the view in the file name
        touch(tmp_path / "flat" / f"{frame}_left.png"), touch(tmp_path / "flat" / f"{frame}_right.png")
    pairs = find_pairs(f"{tmp_path}/flat/*_left.png", f"{tmp_path}/flat/*_right.png")
    assert [(p.left.name, p.right.name) for p in pairs] == [
        ("a_left.png", "a_right.png"),
        ("b_left.png", "b_right.png"),
    ]
    assert len(find_pairs(f"{tmp_path}//*/im0.png", f"{tmp_path}//*/im1.png")) == 4  # a doubled separator
    pairs = find_pairs(f"{tmp_path}/**/im0.png", f"{tmp_path}/**/im1.png")
    assert [(p.left.parent.name, p.right.parent.name) for p in pairs] == [(s, s) for s in ("s1", "s2", "s3", "s4")]
    with pytest.raises(InputError, match="no file matches"):
        find_pairs(f"{tmp_path}/*/x.png", f"{tmp_path}/*/y.png")


def test_data_pairs_writes_the_csv_the_pairs_reader_reads(tmp_path, capsys):
    import numpy as np

    from stereodistill.cli.main import main
    from stereodistill.data.datasets import build_dataset
    from stereodistill.data.formats import write_image, write_pfm

    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        write_image(tmp_path / "scene" / "left" / name, rng.random((16, 24, 3)))
        write_image(tmp_path / "scene" / "right" / name, rng.random((16, 24, 3)))
    write_pfm(tmp_path / "gt" / "a.pfm", np.full((16, 24), 3.0, np.float32))
    out = tmp_path / "lists" / "p.csv"
    assert main(["data", "pairs", str(tmp_path / "scene"), "--disp", str(tmp_path / "gt"), "--out", str(out)]) == 0
    assert "2 pairs, 1 with ground truth" in capsys.readouterr().out
    dataset = build_dataset("pairs", out, max_disp=16)
    assert len(dataset) == 2 and dataset[0]["meta"]["has_gt"] and not dataset[1]["meta"]["has_gt"]

    write_image(tmp_path / "scene" / "right" / "b.png", rng.random((16, 20, 3)))  # sizes differ
    (tmp_path / "scene" / "left" / "c.png").write_bytes(b"")  # no right view
    command = ["data", "pairs", str(tmp_path / "scene" / "left"), str(tmp_path / "scene" / "right"), "--out", str(out)]
    before = out.read_text()
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "2 bad pair(s)" in err and "c.png: no other view (only in" in err and "16x20 (HxW)" in err
    assert out.read_text() == before  # nothing half-written
    assert main([*command, "--skip-bad"]) == 0  # a frame one camera dropped is left out and listed, like the others
    printed = capsys.readouterr().out
    assert printed.count("SKIPPED") == 2 and "c.png" in printed and len(build_dataset("pairs", out)) == 1
    assert main(["data", "pairs", str(tmp_path / "scene"), "--out", str(tmp_path / "scene"), "--skip-bad"]) == 2
    assert "is a folder: name the CSV file to write" in capsys.readouterr().err
    assert main(["data", "pairs", str(tmp_path / "gt"), str(tmp_path / "gt"), "--out", str(out)]) == 2
    assert "is the same folder as the left view" in capsys.readouterr().err  # every pair would be one image twice
    left = str(tmp_path / "scene" / "left")
    assert main(["data", "pairs", left, f"{left}/../left", "--out", str(out), "--skip-bad"]) == 2
    assert "is the same folder as the left view" in capsys.readouterr().err
    assert main(["data", "pairs", str(tmp_path / "scene"), "--out", f"{left}/a.png", "--skip-bad"]) == 2
    assert "a.png: is an image or one of the pairs' files" in capsys.readouterr().err
    assert main(["data", "pairs", str(tmp_path / "scene"), "--out", f"{left}/c.png", "--skip-bad"]) == 2  # skipped
    assert "c.png: is an image" in capsys.readouterr().err
    assert (tmp_path / "scene" / "left" / "a.png").stat().st_size > 100  # the image, not a CSV
    assert main(["data", "pairs", str(tmp_path / "gt"), str(tmp_path / "scene" / "right"), "--out", str(out)]) == 2
    assert "no images in this folder" in capsys.readouterr().err
    assert main(["data", "pairs", str(tmp_path / "gt"), "--out", str(out)]) == 2  # one folder, without the views
    assert "gt: has no left/ and no right/ folder" in capsys.readouterr().err


def test_a_ground_truth_folder_that_matches_no_image_is_an_error(tmp_path, capsys):
    import numpy as np

    from stereodistill.cli.main import main
    from stereodistill.data.formats import write_image, write_pfm

    for side in ("left", "right"):
        write_image(tmp_path / side / "im0.png", np.zeros((8, 8, 3)))
    write_pfm(tmp_path / "gt" / "disp0.pfm", np.ones((8, 8), np.float32))  # named as Middlebury names it
    out = tmp_path / "p.csv"
    command = ["data", "pairs", str(tmp_path / "left"), str(tmp_path / "right"), "--disp", str(tmp_path / "gt")]
    assert main([*command, "--out", str(out)]) == 2
    assert "no ground truth for any pair (looked for files named like the images: im0.pfm" in capsys.readouterr().err
    assert not out.exists()


def test_two_folders_for_infer_name_the_images_without_their_other_view(tmp_path):
    touch(tmp_path / "L" / "a.png"), touch(tmp_path / "R" / "a.png"), touch(tmp_path / "R" / "b.png")
    with pytest.raises(DataError, match=r"L: no left image for b\.png"):
        find_pairs(tmp_path / "L", tmp_path / "R")
    with pytest.raises(DataError, match="same folder as the left view"):
        find_pairs(tmp_path / "L", tmp_path / "L")


def test_lists_keep_working_through_linked_folders_and_linked_lists(tmp_path, capsys):
    import numpy as np

    from stereodistill.cli.main import main
    from stereodistill.data.datasets import build_dataset
    from stereodistill.data.formats import write_image, write_pfm

    for side in ("left", "right"):
        for name in ("a.png", "b.png"):
            write_image(tmp_path / "cam" / side / name, np.zeros((8, 8, 3)))
    write_pfm(tmp_path / "gt" / "a.pfm", np.ones((8, 8), np.float32))
    write_pfm(tmp_path / "gt" / "b.PFM", np.ones((8, 8), np.float32))  # a suffix in capitals is still ground truth
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "deep" / "er")  # "link/.." is deep/, not tmp_path
    out = tmp_path / "link" / "p.csv"
    assert main(["data", "pairs", str(tmp_path / "cam"), "--disp", str(tmp_path / "gt"), "--out", str(out)]) == 0
    assert "2 pairs, 2 with ground truth" in capsys.readouterr().out
    assert [s["meta"]["has_gt"] for s in build_dataset("pairs", out)] == [True, True]
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "alias.csv").symlink_to(out)  # a link to the list, from another folder
    assert len(build_dataset("pairs", tmp_path / "lists" / "alias.csv")) == 2


def test_existing_paths_are_taken_as_they_are_and_a_view_is_never_its_own_partner(tmp_path):
    touch(tmp_path / "x[1]" / "l.png"), touch(tmp_path / "x[1]" / "r.png"), touch(tmp_path / "x1" / "l.png")
    (pair,) = find_pairs(tmp_path / "x[1]" / "l.png", tmp_path / "x[1]" / "r.png")  # not a pattern matching x1/
    assert pair.left.parent.name == "x[1]"
    with pytest.raises(DataError, match="same file as the left view"):
        find_pairs(tmp_path / "x1" / "l.png", tmp_path / "x1" / "l.png")
    with pytest.raises(InputError, match="name the same files"):
        find_pairs(f"{tmp_path}/x*/l.png", f"{tmp_path}/x*/l.png")


def test_data_pairs_names_a_broken_link_instead_of_calling_its_other_view_alone(tmp_path, capsys):
    import numpy as np

    from stereodistill.cli.main import main
    from stereodistill.data.formats import write_image

    rng = np.random.default_rng(0)
    for view in ("left", "right"):
        write_image(tmp_path / view / "a.png", rng.random((16, 24, 3)))
    write_image(tmp_path / "right" / "b.png", rng.random((16, 24, 3)))
    (tmp_path / "left" / "b.png").symlink_to(tmp_path / "gone.png")  # the camera's disk was unmounted
    assert main(["data", "pairs", str(tmp_path), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "b.png: a broken link (its target" in err and "gone.png does not exist" in err
    assert "no other view" not in err and not (tmp_path / "p.csv").exists()


def test_a_broken_link_without_its_other_view_is_named_as_broken_by_infer_and_data_pairs(tmp_path, capsys):
    import numpy as np

    from stereodistill.cli.main import main
    from stereodistill.data.formats import write_image
    from stereodistill.errors import DataError

    rng = np.random.default_rng(0)
    for view in ("left", "right"):
        write_image(tmp_path / view / "a.png", rng.random((16, 24, 3)))
    (tmp_path / "left" / "old.png").symlink_to(tmp_path / "gone.png")  # a stray link, no right view
    with pytest.raises(DataError, match=r"broken link \(its target .*gone\.png does not exist\), and no right") as err:
        find_pairs(tmp_path / "left", tmp_path / "right")
    assert err.value.path == tmp_path / "left" / "old.png"
    assert main(["data", "pairs", str(tmp_path), "--out", str(tmp_path / "p.csv")]) == 2
    out = capsys.readouterr().err
    assert "old.png: a broken link (its target" in out and "and no other view" in out and "only in" not in out
    assert main(["data", "pairs", str(tmp_path), "--out", str(tmp_path / "p.csv"), "--skip-bad"]) == 0
    assert "a.png" in (tmp_path / "p.csv").read_text() and "old.png" not in (tmp_path / "p.csv").read_text()
    # A broken right view with a real left one: the pair is found, and reading it names the link.
    (tmp_path / "left" / "old.png").unlink()
    write_image(tmp_path / "left" / "b.png", rng.random((16, 24, 3)))
    (tmp_path / "right" / "b.png").symlink_to(tmp_path / "gone.png")
    assert [p.name for p in find_pairs(tmp_path / "left", tmp_path / "right")] == ["a", "b"]


def test_broken_links_are_named_in_glob_patterns_with_their_real_target_and_loops_as_loops(tmp_path, capsys):
    import numpy as np

    from stereodistill.cli.main import main
    from stereodistill.data.formats import write_image
    from stereodistill.errors import DataError

    rng = np.random.default_rng(0)
    for name in ("im0.png", "im1.png"):
        write_image(tmp_path / "s1" / name, rng.random((16, 24, 3)))
    (tmp_path / "s3").mkdir()
    (tmp_path / "s3" / "im1.png").symlink_to("gone.png")  # relative: s3/gone.png
    with pytest.raises(
        DataError, match=r"a broken link \(its target .*s3/gone\.png does not exist\), and no left"
    ) as err:
        find_pairs(f"{tmp_path}/*/im0.png", f"{tmp_path}/*/im1.png")
    assert err.value.path == tmp_path / "s3" / "im1.png"
    for view in ("left", "right"):
        write_image(tmp_path / "f" / view / "a.png", rng.random((16, 24, 3)))
    (tmp_path / "f" / "right" / "old.png").symlink_to("old.png")  # a link to itself
    assert main(["data", "pairs", str(tmp_path / "f"), "--out", str(tmp_path / "p.csv")]) == 2
    out = capsys.readouterr().err
    assert f"{tmp_path / 'f' / 'right' / 'old.png'}: a link that reaches no file" in out and "loop" in out


def test_links_in_loops_or_to_other_folders_pair_by_where_they_lie(tmp_path):
    import numpy as np

    from stereodistill.data.formats import broken_link, read_image, write_image
    from stereodistill.errors import DataError

    rng = np.random.default_rng(0)
    write_image(tmp_path / "right" / "c.png", rng.random((16, 24, 3)))
    (tmp_path / "left").mkdir()
    (tmp_path / "left" / "c.png").symlink_to("c.png")  # a link to itself, beside a real right view
    write_image(tmp_path / "g" / "s1" / "im1.png", rng.random((16, 24, 3)))
    (tmp_path / "g" / "s1" / "im0.png").symlink_to("im0.png")
    for left, right in (
        (tmp_path / "left", tmp_path / "right"),
        (f"{tmp_path}/g/*/im0.png", f"{tmp_path}/g/*/im1.png"),
    ):
        (pair,) = find_pairs(left, right)
        with pytest.raises(DataError, match=r"a link that reaches no file .* loop"):
            read_image(pair.left)
    write_image(tmp_path / "elsewhere" / "d.png", rng.random((16, 24, 3)))
    write_image(tmp_path / "right" / "d.png", rng.random((16, 24, 3)))
    (tmp_path / "left" / "c.png").unlink()
    (tmp_path / "right" / "c.png").unlink()
    (tmp_path / "left" / "d.png").symlink_to(tmp_path / "elsewhere" / "d.png")  # named by where it lies
    assert [(p.name, p.left) for p in find_pairs(tmp_path / "left", tmp_path / "right")] == [
        ("d", tmp_path / "left" / "d.png")
    ]
    # A relative target counts from the link's real folder, also when that folder is reached by a link.
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "sub" / "x.png").symlink_to("../gone.png")
    (tmp_path / "L").symlink_to(tmp_path / "real" / "sub")
    assert f"its target {tmp_path / 'real' / 'gone.png'} does not exist" in broken_link(tmp_path / "L" / "x.png")
    (tmp_path / "other" / "deep").mkdir(parents=True)
    (tmp_path / "N").mkdir()
    (tmp_path / "N" / "d").symlink_to(tmp_path / "other" / "deep")
    write_image(tmp_path / "N" / "y.png", rng.random((16, 24, 3)))
    (tmp_path / "N" / "x.png").symlink_to("d/../y.png")  # through the linked d: other/y.png, which is not there
    assert f"its target {tmp_path / 'other' / 'y.png'} does not exist" in broken_link(tmp_path / "N" / "x.png")


def test_a_folder_without_a_single_pair_says_why_even_with_skip_bad(tmp_path, capsys):
    import numpy as np

    from stereodistill.cli.main import main
    from stereodistill.data.formats import write_image

    rng = np.random.default_rng(1)
    for index in range(2):  # a camera that prefixes its names: no left name has a right partner
        write_image(tmp_path / "cam" / "left" / f"left_{index}.png", rng.random((16, 24, 3)))
        write_image(tmp_path / "cam" / "right" / f"right_{index}.png", rng.random((16, 24, 3)))
    for flags in ([], ["--skip-bad"]):  # with or without it: none would be left, and it says so
        assert main(["data", "pairs", str(tmp_path / "cam"), "--out", str(tmp_path / "p.csv"), *flags]) == 2
        err = capsys.readouterr().err
        assert "left_0.png" in err and "no good pair is left (4 problem(s)): " in err
        assert "--skip-bad leaves them out" not in err and "no readable pairs" not in err
    assert main(["data", "pairs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p.csv")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_data_pairs_refuses_a_floating_point_view_as_infer_and_adapt_would(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from stereodistill.cli.main import main

    for side in ("left", "right"):
        (tmp_path / "cam" / side).mkdir(parents=True)
        Image.fromarray(np.zeros((16, 24), np.float32), mode="F").save(tmp_path / "cam" / side / "a.tif")
    assert main(["data", "pairs", str(tmp_path / "cam"), "--out", str(tmp_path / "p.csv")]) == 2
    assert "a.tif: floating-point images are not supported as stereo views" in capsys.readouterr().err


def test_data_pairs_reads_every_file_whole_and_names_a_truncated_one(tmp_path, capsys):
    import numpy as np

    from stereodistill.cli.main import main
    from stereodistill.data.formats import image_size, write_image, write_png_disparity

    rng = np.random.default_rng(2)
    for name in ("a", "b"):
        for side in ("left", "right"):
            write_image(tmp_path / "cam" / side / f"{name}.png", rng.random((32, 48, 3)))
        write_png_disparity(tmp_path / "gt" / f"{name}.png", rng.random((32, 48)).astype(np.float32) * 16)
    victim = tmp_path / "cam" / "right" / "b.png"
    victim.write_bytes(victim.read_bytes()[:200])  # a copy cut short: its header still reads
    assert image_size(victim) == (32, 48)
    out = tmp_path / "p.csv"
    assert main(["data", "pairs", str(tmp_path / "cam"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "1 bad pair(s)" in err and f"{victim}: not a readable image" in err and "--skip-bad" in err
    assert not out.exists()
    assert main(["data", "pairs", str(tmp_path / "cam"), "--out", str(out), "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "SKIPPED" in printed and "b.png" in printed and "1 pair" in printed
    assert out.read_text().count("\n") == 2  # the header and pair a

    truth = tmp_path / "gt" / "a.png"  # ground truth is read whole too
    truth.write_bytes(truth.read_bytes()[:120])
    assert main(["data", "pairs", str(tmp_path / "cam"), "--disp", str(tmp_path / "gt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no good pair is left (2 problem(s))" in err and f"{truth}: " in err and f"{victim}: " in err

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


def test_glob_patterns_pair_in_order_and_must_match_as_many_files(tmp_path):
    for scene in ("s1", "s2", "s3"):
        touch(tmp_path / scene / "im0.png")
        if scene != "s3":
            touch(tmp_path / scene / "im1.png")
    with pytest.raises(InputError, match=r"matches 3 files but .* matches 2"):
        find_pairs(f"{tmp_path}/*/im0.png", f"{tmp_path}/*/im1.png")
    touch(tmp_path / "s3" / "im1.png")
    assert [p.name for p in find_pairs(f"{tmp_path}/*/im0.png", f"{tmp_path}/*/im1.png")] == ["s1", "s2", "s3"]
    with pytest.raises(InputError, match="no file matches"):
        find_pairs(f"{tmp_path}/*/x.png", f"{tmp_path}/*/y.png")

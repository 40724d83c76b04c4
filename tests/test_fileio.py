"""Records this tool writes beside its outputs, read back: a damaged one is one clear error."""

import pytest

from stereodistill.errors import DataError
from stereodistill.fileio import read_record


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("r.json", b"{bad", "is damaged: not valid JSON (Expecting property name"),
        ("r.json", b"[1, 2]", "is damaged: it holds a list, not a mapping; delete it"),
        (
            "r.yaml",
            b"x: [",
            "is damaged: not valid YAML (expected the node content, but found '<stream end>' at line 1, column 5)",
        ),
        ("r.yaml", b"", "is damaged: it holds nothing, not a mapping"),
        ("r.json", b"\xff\xfe{}", "is damaged: not UTF-8 text (invalid start byte at byte 0)"),
    ],
)
def test_a_damaged_record_names_its_file_the_problem_and_the_remedy(tmp_path, name, content, problem):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=r"; delete it$") as info:
        read_record(tmp_path / name, "delete it")
    assert info.value.path == tmp_path / name and problem in str(info.value)
    assert "\n" not in str(info.value)


def test_a_sound_record_is_read(tmp_path):
    (tmp_path / "r.yaml").write_text("a: 1\n")
    (tmp_path / "r.json").write_text('{"a": 1}')
    assert read_record(tmp_path / "r.yaml", "") == read_record(tmp_path / "r.json", "") == {"a": 1}


def test_a_write_that_fails_part_way_is_named_by_the_file_asked_for(tmp_path, monkeypatch):
    import errno
    import os

    from stereodistill.fileio import write_text_atomic

    def full(source, target):  # as a full disk or a refused rename reports it: by the temporary file
        raise OSError(errno.ENOSPC, "No space left on device", str(source))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match=r"cannot be written \(No space left on device\)") as info:
        write_text_atomic(tmp_path / "out.json", "{}")
    assert info.value.filename == str(tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []  # nor a temporary file left behind


def test_an_output_below_a_broken_link_is_refused_before_the_work(tmp_path):
    from stereodistill.fileio import check_writable

    (tmp_path / "runs").symlink_to(tmp_path / "gone")
    with pytest.raises(NotADirectoryError, match=r"runs is a broken link\)") as info:
        check_writable(tmp_path / "runs" / "a" / "m.json")
    assert info.value.filename == str(tmp_path / "runs" / "a" / "m.json")
    check_writable(tmp_path / "new" / "m.json")  # a folder still to be made is fine, and is not made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_another_failure_inside_an_atomic_write_is_left_as_it_is(tmp_path):
    import errno

    from stereodistill.fileio import atomic_path

    with pytest.raises(OSError, match=r"^cannot write mode RGBA as JPEG$"), atomic_path(tmp_path / "x.jpg"):
        raise OSError("cannot write mode RGBA as JPEG")  # an encoder's error: no errno, not about a file
    with pytest.raises(FileNotFoundError) as info, atomic_path(tmp_path / "out.png"):
        (tmp_path / "missing-input.png").read_bytes()  # an input the block reads
    assert info.value.filename == str(tmp_path / "missing-input.png")
    eio = pytest.raises(OSError, match=r"an input/output error while it was written \(its disk's, or an input's\)")
    with eio as info, atomic_path(tmp_path / "out.png"):
        raise OSError(errno.EIO, "Input/output error")  # the output's disk or an input's: the output named, not blamed
    assert info.value.filename == str(tmp_path / "out.png")
    full = pytest.raises(OSError, match=r"cannot be written \(No space left on device\)")
    with full as info, atomic_path(tmp_path / "out.png") as tmp:
        tmp.write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")  # as a library's write reports it: no file
    assert info.value.filename == str(tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []

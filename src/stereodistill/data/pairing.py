"""Which left image goes with which right image, for a user's own footage: two files, two folders
paired by file name, or two glob patterns (scene trees such as ``mb/*/im0.png`` / ``mb/*/im1.png``,
as the demos of RAFT-Stereo and IGEV take them). Each pair gets a name for its outputs: the file
stem, or the scene folder when every left image has the same file name."""

from __future__ import annotations

import csv
import glob
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stereodistill.data.formats import IMAGE_SUFFIXES, broken_link
from stereodistill.errors import DataError, InputError


@dataclass(frozen=True)
class PairFiles:
    name: str  # unique among the pairs found together: names their outputs
    left: Path
    right: Path


def _is_glob(text: str) -> bool:
    """A pattern, unless it names an existing file or folder (``scene[1]/im0.png`` is taken as it is)."""
    return any(char in text for char in "*?[") and not Path(text).exists()


def _listed(path: Path) -> bool:
    """An image file, or a broken link in its place: listed, so that reading it names the link rather
    than its other view being reported as alone."""
    return path.is_file() or path.is_symlink()


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _listed(p) and p.suffix.lower() in IMAGE_SUFFIXES)


def _alone(path: Path) -> str:
    """Why an image has no other view, for a list of problems: a broken link says so first."""
    link = broken_link(path)
    return f"{path}: {link}, and no other view" if link else f"{path.name}: no other view (only in {path.parent})"


def _no_broken_link_alone(paths: list[Path], side: str) -> None:
    """A broken link without its other view is named as broken, not as an image alone."""
    for path in paths:
        link = broken_link(path)
        if link:
            raise DataError(path, f"{link}, and no {side} image goes with it")


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    """A glob pattern as a regular expression whose groups capture what each wildcard matched."""
    parts, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            parts.append("((?:[^/]*/)*)")
            i += 3
        elif pattern.startswith("**", i):
            parts.append("(.*)")
            i += 2
        elif pattern[i] == "*":
            parts.append("([^/]*)")
            i += 1
        elif pattern[i] == "?":
            parts.append("([^/])")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            parts.append("([" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "])")
            i = end + 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts))


def _by_wildcards(pattern: str) -> dict[tuple[str, ...], Path]:
    """The files ``pattern`` matches, keyed by what its wildcards matched: ``mb/*/im0.png`` and
    ``mb/*/im1.png`` pair by scene folder, ``*_left.png`` and ``*_right.png`` by frame name."""
    regex = _wildcard_regex(re.sub("/+", "/", pattern))  # glob's own results have single separators
    found = {}
    for path in sorted(glob.glob(pattern, recursive=True)):
        match = regex.fullmatch(path)
        found[match.groups() if match else (path,)] = Path(path)
    return found


def find_pairs(left: str | Path, right: str | Path) -> list[PairFiles]:
    """The pairs that ``left`` and ``right`` name (files, folders or glob patterns, both alike)."""
    left, right = str(left), str(right)
    if _is_glob(left) != _is_glob(right):
        raise InputError(f"{left} and {right}: give two glob patterns, or neither")
    if _is_glob(left):
        lefts, rights = _by_wildcards(left), _by_wildcards(right)
        if not lefts:
            raise InputError(f"no file matches {left!r}")
        for pattern, names, other, side in ((right, lefts, rights, "right"), (left, rights, lefts, "left")):
            missing = sorted(set(names) - set(other))
            _no_broken_link_alone([names[key] for key in missing], side)
            if missing:
                shown = ", ".join(str(names[key]) for key in missing[:5]) + (" …" if len(missing) > 5 else "")
                raise InputError(f"no file of {pattern!r} goes with {shown}")
        same = [str(lefts[key]) for key in lefts if key in rights and _same(lefts[key], rights[key])]
        if same:
            raise InputError(f"{left!r} and {right!r} name the same files ({same[0]}): the right view is another file")
        return _named([(lefts[key], rights[key]) for key in sorted(lefts)])
    left_path, right_path = Path(left), Path(right)
    if left_path.is_dir() != right_path.is_dir():
        raise InputError(f"{left} and {right}: give two image files or two folders, not one of each")
    _distinct_views(left_path, right_path)
    if not left_path.is_dir():
        return [PairFiles(left_path.stem, left_path, right_path)]
    lefts = _images(left_path)
    if not lefts:
        raise DataError(left_path, "no images in this folder")
    for paths, other, side in ((lefts, right_path, "right"), (_images(right_path), left_path, "left")):
        missing = [p for p in paths if not _listed(other / p.name)]
        _no_broken_link_alone(missing, side)
        if missing:
            more = " …" if len(missing) > 5 else ""
            raise DataError(other, f"no {side} image for {', '.join(p.name for p in missing[:5])}{more}")
    return _named([(p, right_path / p.name) for p in lefts])


def _named(pairs: list[tuple[Path, Path]]) -> list[PairFiles]:
    """Name each pair by its left image's path below the lefts' common folder, without the suffix
    (``Adirondack/im0`` → ``Adirondack`` when every left is ``im0``); separators become ``_``."""
    lefts = [p for p, _ in pairs]
    root = Path(os.path.commonpath([str(p.parent.resolve()) for p in lefts]))
    same_file_name = len({p.name for p in lefts}) == 1 and len(lefts) > 1
    names = []
    for path in lefts:
        relative = (path.parent.resolve() / path.name).relative_to(root)  # where it lies, link or not
        parts = relative.parent.parts if same_file_name else (*relative.parent.parts, relative.stem)
        names.append("_".join(parts) or relative.stem)
    if len(set(names)) != len(names):
        clashes = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"two pairs would write the same outputs: {', '.join(clashes)}")
    return [PairFiles(name, left, right) for name, (left, right) in zip(names, pairs, strict=True)]


DISPARITY_SUFFIXES = (".pfm", ".png", ".npy")


@dataclass(frozen=True)
class FolderPairs:
    """The pairs two folders hold, matched by file name, before anything is written: each row is
    (left, right, ground truth or None); ``skipped`` says what ``skip_bad`` left out and why."""

    left: Path
    rows: tuple[tuple[Path, Path, Path | None], ...]
    skipped: tuple[str, ...]
    with_truth: int  # rows whose ground truth was found
    masks: tuple[Path | None, ...] = ()  # each row's mask of the pixels to score (a list's), or none

    def write(self, out: Path, truth_column: bool) -> None:
        """The ``pairs`` CSV at ``out`` (atomically), with paths relative to its folder; quoted where a
        path holds a comma or a quote, as the reader expects."""
        from stereodistill.fileio import write_text_atomic

        if out.is_dir():
            raise DataError(out, "is a folder: name the CSV file to write")
        target = out.resolve()
        if out.suffix.lower() in (*IMAGE_SUFFIXES, *DISPARITY_SUFFIXES) or any(
            path is not None and path.resolve() == target for row in self.rows for path in row
        ):
            raise DataError(out, "is an image or one of the pairs' files: name a new CSV file to write")
        folder = target.parent  # the reader resolves relative paths from the CSV's real folder

        def relative(path: Path) -> str:
            return os.path.relpath(path.parent.resolve() / path.name, folder)  # an image link stays a link

        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        mask_column = truth_column and any(self.masks)
        writer.writerow(["left", "right", *(["disp"] if truth_column else []), *(["mask"] if mask_column else [])])
        for index, (left, right, truth) in enumerate(self.rows):
            row = [relative(left), relative(right)]
            if truth_column:
                row.append(relative(truth) if truth else "")
            if mask_column:
                mask = self.masks[index]
                row.append(relative(mask) if mask else "")
            writer.writerow(row)
        write_text_atomic(out, text.getvalue())


def check_rows(
    rows: list[tuple[Path, Path, Path | None]],
    masks: Mapping[tuple[Path, Path], Path | None] | None = None,
    decode: bool = False,
) -> tuple[list[tuple[Path, Path, Path | None]], list[str]]:
    """The rows whose two views are readable images of one size, with ground truth and a mask (when
    given; ``masks`` by (left, right)) of that size too, all from their headers; and a line for each
    other row saying what is wrong. ``decode``: every file of a row that passes is also read whole, which
    finds what a header cannot show (a truncated or corrupt file) at the cost of decoding it."""
    from stereodistill.data.formats import disparity_size, image_size, read_disparity, read_image, read_mask

    good, problems = [], []
    for left, right, truth in rows:
        mask = (masks or {}).get((left, right))
        try:
            size = image_size(left, view=True)
            checks = [(right, image_size(right, view=True), "its left view is")]
            checks += [(truth, disparity_size(truth), "its images are")] if truth is not None else []
            checks += [(mask, image_size(mask), "its images are")] if mask is not None else []
        except DataError as exc:
            problems.append(str(exc))
            continue
        wrong = next(((path, hw, what) for path, hw, what in checks if hw != size), None)
        if wrong is not None:
            path, (h, w), what = wrong
            problems.append(str(DataError(path, f"is {h}x{w} (HxW) but {what} {size[0]}x{size[1]}")))
            continue
        if decode:
            readers = [(read_image, left), (read_image, right), (read_disparity, truth), (read_mask, mask)]
            try:
                for read, path in readers:
                    if path is not None:
                        read(path)
            except DataError as exc:
                problems.append(str(exc))
                continue
        good.append((left, right, truth))
    return good, problems


def bad_pairs_error(where: Path, problems: list[str], skipped: bool = False) -> DataError:
    """One error listing the first problems, and how to leave such pairs out (``skipped``: they were,
    and nothing was left)."""
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    listed = f"{'; '.join(problems[:3])}{more}"
    if skipped:
        return DataError(where, f"no good pair is left ({len(problems)} problem(s)): {listed}")
    return DataError(where, f"{len(problems)} bad pair(s): {listed}; --skip-bad leaves them out")


def refuse_unusable(where: Path, good: Sequence[Any], problems: list[str], skip_bad: bool) -> None:
    """The error for a set of pairs that cannot be used as it is: bad pairs without ``skip_bad``
    (listed), or no good pair at all (with or without it; then ``--skip-bad`` is not suggested)."""
    if problems and (not skip_bad or not good):
        raise bad_pairs_error(where, problems, skipped=not good)
    if not good:
        raise DataError(where, "no readable pairs")


def _same(left: Path, right: Path) -> bool:
    # realpath, not resolve(): a link in a loop is compared as it is, not raised as RuntimeError
    return os.path.realpath(left) == os.path.realpath(right)


def _distinct_views(left: Path, right: Path) -> None:
    """Two names for one image or folder would pair every image with itself: zero disparity everywhere."""
    if _same(left, right):
        what = "folder" if left.is_dir() else "file"
        raise DataError(right, f"is the same {what} as the left view ({left}): give the right camera's {what}")


def _truth_files(folder: Path) -> dict[str, Path]:
    """Ground-truth files by stem, suffixes in any case (``a.PFM``); PFM before PNG before NPY."""
    found: dict[str, Path] = {}
    rank = {suffix: i for i, suffix in enumerate(DISPARITY_SUFFIXES)}
    for path in sorted(folder.iterdir(), key=lambda p: rank.get(p.suffix.lower(), len(rank))):
        if path.is_file() and path.suffix.lower() in rank:
            found.setdefault(path.stem, path)
    return found


def views_of(folder: Path) -> tuple[Path, Path]:
    """The ``left/`` and ``right/`` folders of one folder holding both views."""
    if not folder.is_dir():
        raise DataError(folder, "not a folder" if folder.exists() else "no such folder")
    missing = [name for name in ("left", "right") if not (folder / name).is_dir()]
    if missing:
        raise DataError(
            folder,
            f"has no {' and no '.join(f'{name}/' for name in missing)} folder: give a folder holding left/ and "
            "right/ (or make a list of its pairs with `stereodistill data pairs LEFT_DIR RIGHT_DIR --out pairs.csv`)",
        )
    return folder / "left", folder / "right"


def folder_pairs(
    left: Path, right: Path, disp: Path | None = None, skip_bad: bool = False, decode: bool = False
) -> FolderPairs:
    """The pairs of two folders matched by file name (ground truth from ``disp`` by stem, when given),
    checked from the image headers (``decode``: and read whole, see :func:`check_rows`). Names without
    their other view, pairs whose sizes differ and images that cannot be read are an error listing
    them, unless ``skip_bad`` (then they are left out and listed). Nothing is written."""
    for folder in (left, right, *([disp] if disp is not None else [])):
        if not folder.is_dir():
            raise DataError(folder, "not a folder")
    _distinct_views(left, right)
    lefts = {p.name: p for p in _images(left)}
    rights = {p.name: p for p in _images(right)}
    if not lefts:
        raise DataError(left, "no images in this folder")
    problems = [_alone(lefts[name] if name in lefts else rights[name]) for name in sorted(lefts.keys() ^ rights.keys())]
    truths = _truth_files(disp) if disp is not None else {}
    rows = [(lefts[name], rights[name], truths.get(Path(name).stem)) for name in sorted(lefts.keys() & rights.keys())]
    rows, bad = check_rows(rows, decode=decode)
    problems += bad
    refuse_unusable(left, rows, problems, skip_bad)
    with_truth = sum(truth is not None for *_, truth in rows)
    if disp is not None and not with_truth:
        names = ", ".join(f"{Path(rows[0][0].name).stem}{suffix}" for suffix in DISPARITY_SUFFIXES)
        raise DataError(disp, f"no ground truth for any pair (looked for files named like the images: {names})")
    return FolderPairs(left, tuple(rows), tuple(problems), with_truth)

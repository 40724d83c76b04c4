"""Which left image goes with which right image, for a user's own footage: two files, two folders
paired by file name, or two glob patterns (scene trees such as ``mb/*/im0.png`` / ``mb/*/im1.png``,
as the demos of RAFT-Stereo and IGEV take them). Each pair gets a name for its outputs: the file
stem, or the scene folder when every left image has the same file name."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from stereodistill.data.formats import IMAGE_SUFFIXES
from stereodistill.errors import DataError, InputError


@dataclass(frozen=True)
class PairFiles:
    name: str  # unique among the pairs found together: names their outputs
    left: Path
    right: Path


def _is_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_pairs(left: str | Path, right: str | Path) -> list[PairFiles]:
    """The pairs that ``left`` and ``right`` name (files, folders or glob patterns, both alike)."""
    left, right = str(left), str(right)
    if _is_glob(left) != _is_glob(right):
        raise InputError(f"{left} and {right}: give two glob patterns, or neither")
    if _is_glob(left):
        lefts = [Path(p) for p in sorted(glob.glob(left, recursive=True))]
        rights = [Path(p) for p in sorted(glob.glob(right, recursive=True))]
        if not lefts:
            raise InputError(f"no file matches {left!r}")
        if len(lefts) != len(rights):
            raise InputError(f"{left!r} matches {len(lefts)} files but {right!r} matches {len(rights)}")
        return _named(list(zip(lefts, rights, strict=True)))
    left_path, right_path = Path(left), Path(right)
    if left_path.is_dir() != right_path.is_dir():
        raise InputError(f"{left} and {right}: give two image files or two folders, not one of each")
    if not left_path.is_dir():
        return [PairFiles(left_path.stem, left_path, right_path)]
    lefts = _images(left_path)
    if not lefts:
        raise DataError(left_path, "no images in this folder")
    missing = [p.name for p in lefts if not (right_path / p.name).is_file()]
    if missing:
        more = " …" if len(missing) > 5 else ""
        raise DataError(right_path, f"no right image for {', '.join(missing[:5])}{more}")
    return _named([(p, right_path / p.name) for p in lefts])


def _named(pairs: list[tuple[Path, Path]]) -> list[PairFiles]:
    """Name each pair by its left image's path below the lefts' common folder, without the suffix
    (``Adirondack/im0`` → ``Adirondack`` when every left is ``im0``); separators become ``_``."""
    lefts = [p for p, _ in pairs]
    root = Path(os.path.commonpath([str(p.parent.resolve()) for p in lefts]))
    same_file_name = len({p.name for p in lefts}) == 1 and len(lefts) > 1
    names = []
    for path in lefts:
        relative = path.resolve().relative_to(root)
        parts = relative.parent.parts if same_file_name else (*relative.parent.parts, relative.stem)
        names.append("_".join(parts) or relative.stem)
    if len(set(names)) != len(names):
        clashes = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"two pairs would write the same outputs: {', '.join(clashes)}")
    return [PairFiles(name, left, right) for name, (left, right) in zip(names, pairs, strict=True)]


DISPARITY_SUFFIXES = (".pfm", ".png", ".npy")


def pairs_csv(
    left: Path, right: Path, out: Path, disp: Path | None = None, skip_bad: bool = False
) -> tuple[int, list[str]]:
    """Write the ``pairs`` CSV for two folders matched by file name (ground truth from ``disp`` by
    stem, when given); paths are relative to the CSV's folder. Names without their other view are an
    error listing them; so are pairs whose sizes differ or images that cannot be read, unless
    ``skip_bad`` (then they are left out and returned). Returns (pairs written, what was skipped)."""
    from stereodistill.data.formats import image_size
    from stereodistill.fileio import write_text_atomic

    for folder in (left, right, *([disp] if disp is not None else [])):
        if not folder.is_dir():
            raise DataError(folder, "not a folder")
    lefts = {p.name: p for p in _images(left)}
    rights = {p.name: p for p in _images(right)}
    if not lefts:
        raise DataError(left, "no images in this folder")
    unmatched = sorted(lefts.keys() ^ rights.keys())
    if unmatched:
        shown = ", ".join(f"{n} (only in {left if n in lefts else right})" for n in unmatched[:5])
        more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        raise DataError(left, f"{len(unmatched)} image(s) without their other view: {shown}{more}")
    rows, problems = [], []
    for name in sorted(lefts):
        try:
            sizes = image_size(lefts[name]), image_size(rights[name])
            if sizes[0] != sizes[1]:
                raise DataError(
                    rights[name],
                    f"is {sizes[1][0]}x{sizes[1][1]} (HxW) but its left view is {sizes[0][0]}x{sizes[0][1]}",
                )
        except DataError as exc:
            problems.append(str(exc))
            continue
        truth = ""
        if disp is not None:
            found = [disp / f"{Path(name).stem}{suffix}" for suffix in DISPARITY_SUFFIXES]
            found = [p for p in found if p.is_file()]
            truth = os.path.relpath(found[0], out.parent) if found else ""
        rows.append((os.path.relpath(lefts[name], out.parent), os.path.relpath(rights[name], out.parent), truth))
    if problems and not skip_bad:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DataError(
            left, f"{len(problems)} bad pair(s): {'; '.join(problems[:3])}{more}; --skip-bad leaves them out"
        )
    if not rows:
        raise DataError(left, "no readable pairs")
    header = "left,right,disp" if disp is not None else "left,right"
    lines = [header] + [",".join(row if disp is not None else row[:2]) for row in rows]
    write_text_atomic(out, "\n".join(lines) + "\n")
    return len(rows), problems

"""Middlebury stereo: the 2014 scenes and the MiddEval3 benchmark folders.

Any folder (at most three levels below the root, the root included) holding ``im0.png`` and
``im1.png`` is a pair, so the reader works whether the root is ``MiddEval3/``, its parent, or a
folder of 2014 ``<scene>-perfect`` downloads. GT is ``disp0GT.pfm`` (MiddEval3) or ``disp0.pfm``
(2014), ``inf`` = unknown; ``mask0nocc.png`` (255 = non-occluded) restricts the evaluated pixels,
which is the MiddEval3 "nonocc" protocol: MiddEval3 training folders always ship it, so there a
missing one is an error on load; a 2014 scene is scored on every pixel with ground truth unless it
has one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from stereodistill.data.datasets.base import DATASETS, SampleFiles, StereoDataset, list_dir
from stereodistill.errors import ConfigError

SPLITS: tuple[str, ...] = ("train", "test", "all")
RESOLUTIONS: tuple[str, ...] = ("F", "H", "Q")
MAX_DEPTH = 3
GT_NAMES: tuple[str, ...] = ("disp0GT.pfm", "disp0.pfm")
MASK_NAME = "mask0nocc.png"
_MIDDEVAL3_DIR = re.compile(r"(training|test)([FHQ])")


def stereo_dirs(root: Path, max_depth: int = MAX_DEPTH) -> list[tuple[Path, set[str]]]:
    """Folders holding ``im0.png`` and ``im1.png`` (root = depth 0), with the names they contain.

    Returning the names lets the caller find GT, mask and calibration files without another stat.
    """
    found: list[tuple[Path, set[str]]] = []
    stack = [(root, 0)]
    while stack:
        directory, depth = stack.pop()
        entries = list_dir(directory)
        names = {e.name for e in entries}
        if "im0.png" in names and "im1.png" in names:
            found.append((directory, names))
        if depth < max_depth:
            stack.extend((Path(e.path), depth + 1) for e in entries if not e.name.startswith(".") and e.is_dir())
    return found


def read_ndisp(calib: Path) -> int | None:
    """``ndisp`` from a Middlebury ``calib.txt`` (a few lines ``key=value``); None when absent or unparsable.

    Calibration is auxiliary: a bad one must not stop the pair from loading, so it is not an error.
    """
    try:
        text = calib.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ndisp":
            try:
                ndisp = int(float(value.strip()))
            except ValueError:
                return None
            return ndisp if ndisp > 0 else None
    return None


@DATASETS.register("middlebury")
class Middlebury(StereoDataset):
    """Middlebury 2014 and MiddEval3 pairs.

    Options: ``resolution`` ("F", "H" or "Q") keeps only MiddEval3 ``training<res>``/``test<res>``
    folders; None keeps every folder, 2014 scenes included. ``split``: "train" = folders with GT
    (a MiddEval3 ``training*`` folder always counts, its missing GT then reported on load), "test" =
    folders without, "all". Ids are the folder's path below the root (``trainingQ/Adirondack``);
    ``extra`` holds ``split``, ``resolution`` (MiddEval3 only) and ``ndisp`` (when ``calib.txt`` gives it).
    """

    name = "middlebury"
    layout = (
        "folders holding im0.png and im1.png (+ disp0GT.pfm or disp0.pfm, mask0nocc.png, calib.txt) up to "
        "3 levels below the root: MiddEval3 {training,test}{F,H,Q}/<scene>/ or 2014 <scene>-perfect/"
    )

    def __init__(self, root: str | Path, *, split: str = "train", resolution: str | None = None, **kwargs: Any) -> None:
        if split not in SPLITS:
            raise ConfigError(f"middlebury split must be one of {', '.join(SPLITS)}, got {split!r}")
        if resolution is not None:
            resolution = resolution.upper()
            if resolution not in RESOLUTIONS:
                raise ConfigError(f"middlebury resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        self.resolution = resolution
        super().__init__(root, split=split, **kwargs)

    def discover(self) -> list[SampleFiles]:
        files: list[SampleFiles] = []
        for scene, names in stereo_dirs(self.root):
            # By the name the user gave, else the real one (a link named otherwise: ``ln -s …/trainingQ myQ``).
            match = _MIDDEVAL3_DIR.fullmatch(scene.absolute().parent.name) or _MIDDEVAL3_DIR.fullmatch(
                scene.resolve().parent.name
            )
            if self.resolution is not None and (match is None or match.group(2) != self.resolution):
                continue
            gt_name = next((n for n in GT_NAMES if n in names), None)
            training = match is not None and match.group(1) == "training"  # MiddEval3 ships its GT and mask
            if gt_name is None and training:
                gt_name = GT_NAMES[0]  # MiddEval3 training ships GT: list it so loading names the missing file
            disp = scene / gt_name if gt_name is not None else None
            split = "train" if disp is not None else "test"
            if self.split != "all" and split != self.split:
                continue
            extra: dict[str, Any] = {"split": split}
            if match is not None:
                extra["resolution"] = match.group(2)
            if "calib.txt" in names:
                ndisp = read_ndisp(scene / "calib.txt")
                if ndisp is not None:
                    extra["ndisp"] = ndisp
            rel = scene.relative_to(self.root).as_posix()
            files.append(
                SampleFiles(
                    id=scene.name if rel == "." else rel,
                    left=scene / "im0.png",
                    right=scene / "im1.png",
                    disp=disp,
                    mask=scene / MASK_NAME if disp is not None and (MASK_NAME in names or training) else None,
                    extra=extra,
                )
            )
        return files

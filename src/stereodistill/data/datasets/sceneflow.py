"""SceneFlow (FlyingThings3D, Driving, Monkaa) read from the trees its official archives extract to.

Every archive extracts to ``frames_<pass>/...`` and ``disparity/...``; people either merge the three
subsets into one tree (as PSMNet/GwcNet do) or keep one folder per subset, so ``frames_<pass>``
directories are looked for at the root and one and two levels below it. Discovery only lists
directories: on the ~40k frames of the full set it never opens an image, and it only lists the
``left`` folders (the right image and disparity paths follow from the left one). A frame whose
right image or disparity is missing is still listed, with its expected path, so that loading it (or
``data check``) names the missing file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from stereodistill.data.datasets.base import (
    DATASETS,
    SampleFiles,
    StereoDataset,
    list_dir,
    path_matches,
    read_list_file,
)
from stereodistill.data.formats import IMAGE_SUFFIXES
from stereodistill.errors import ConfigError, DataError

PASSES: tuple[str, ...] = ("finalpass", "cleanpass")
SUBSETS: tuple[str, ...] = ("flyingthings3d", "driving", "monkaa")
SPLITS: tuple[str, ...] = ("train", "test", "all")

# frames_<pass>/TRAIN/A/0001/left is four levels deep; the bound keeps a symlink loop from hanging.
_MAX_WALK_DEPTH = 6
# Sibling trees of frames_<pass> that never hold another frames_<pass>: not worth listing.
_NOT_CONTAINERS = ("frames_", "disparity", "optical_flow", "motion_boundaries", "camera_data", "object_index")


def subset_of(parts: Sequence[str]) -> str:
    """Subset of a frame from its path inside ``frames_<pass>``: TRAIN/TEST → FlyingThings3D, …

    a ``*_focallength`` component → Driving, anything else → Monkaa (``<scene>/left/NNNN.png``).
    """
    if any(part.upper() in ("TRAIN", "TEST") for part in parts):
        return "flyingthings3d"
    if any(part.endswith("_focallength") for part in parts):
        return "driving"
    return "monkaa"


def find_frame_dirs(root: Path, pass_: str) -> list[Path]:
    """``frames_<pass>`` directories at ``root`` and one and two levels below it."""
    target = f"frames_{pass_}"
    found: list[Path] = []
    level = [root]
    for depth in range(3):
        below: list[Path] = []
        for directory in level:
            for entry in list_dir(directory):
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                if entry.name == target:
                    found.append(Path(entry.path))
                elif depth < 2 and not entry.name.lower().startswith(_NOT_CONTAINERS):
                    below.append(Path(entry.path))
        level = below
    return sorted(found)


def _left_dirs(frames_dir: Path) -> Iterator[Path]:
    """Every ``left`` directory under ``frames_dir`` (``right`` trees are not listed)."""
    stack = [(frames_dir, 0)]
    while stack:
        directory, depth = stack.pop()
        for entry in list_dir(directory):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if entry.name == "left":
                yield Path(entry.path)
            elif entry.name != "right" and depth < _MAX_WALK_DEPTH:
                stack.append((Path(entry.path), depth + 1))


@DATASETS.register("sceneflow")
class SceneFlow(StereoDataset):
    """SceneFlow frames of one render pass; dense GT, no occlusion mask.

    Options: ``pass_`` ("finalpass" or "cleanpass"); ``subsets`` (any of flyingthings3d, driving,
    monkaa); ``exclude_file``, a list of frames to drop matched by trailing path part (e.g.
    FlyingThings3D's ``all_unused_files.txt``, lines like ``TRAIN/A/0001/left/0006.png``; a frame
    goes when its left or right image is listed). ``split``: "train" = everything except
    FlyingThings3D TEST, "test" = FlyingThings3D TEST, "all". Sample ids are the frame's path inside
    ``frames_<pass>`` without ``left`` and suffix, prefixed by the folder holding ``frames_<pass>``
    when that is not the root (``TRAIN/A/0001/0006``, ``Monkaa/treeflight_x2/0010``).
    """

    name = "sceneflow"
    evaluation_split = "test"  # FlyingThings3D TEST, the benchmark's test set (it has ground truth)

    @classmethod
    def scoring_split(cls, list_file: str | Path | None = None, options: Mapping[str, Any] | None = None) -> str:
        """FlyingThings3D's TEST where it is read; Driving and Monkaa have no test frames, so a set of
        them alone is scored on theirs; a list decides by itself which frames (of either split)."""
        if list_file:
            return "all"
        subsets = (options or {}).get("subsets", SUBSETS)
        subsets = (subsets,) if isinstance(subsets, str) else subsets
        return cls.evaluation_split if "flyingthings3d" in {str(s).lower() for s in subsets} else "train"

    layout = (
        "frames_finalpass/ (or frames_cleanpass/) and disparity/ trees of FlyingThings3D "
        "({TRAIN,TEST}/{A,B,C}/NNNN/{left,right}/NNNN.png), Driving and/or Monkaa, at the root or "
        "one or two levels below it"
    )

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train",
        pass_: str = "finalpass",
        subsets: Iterable[str] = SUBSETS,
        exclude_file: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        if split not in SPLITS:
            raise ConfigError(f"sceneflow split must be one of {', '.join(SPLITS)}, got {split!r}")
        if pass_ not in PASSES:
            raise ConfigError(f"sceneflow pass_ must be one of {', '.join(PASSES)}, got {pass_!r}")
        if isinstance(subsets, str):  # a single name, not its letters
            subsets = (subsets,)
        chosen = {s.lower() for s in subsets}
        unknown = sorted(chosen - set(SUBSETS))
        if unknown or not chosen:
            raise ConfigError(f"sceneflow subsets must be among {', '.join(SUBSETS)}, got {sorted(chosen)}")
        self.pass_ = pass_
        self.subsets = tuple(s for s in SUBSETS if s in chosen)
        self.exclude_file = None if exclude_file is None else Path(exclude_file)
        super().__init__(root, split=split, **kwargs)

    def discover(self) -> list[SampleFiles]:
        excluded = set(read_list_file(self.exclude_file)) if self.exclude_file is not None else set()
        files: list[SampleFiles] = []
        for frames_dir in find_frame_dirs(self.root, self.pass_):
            disparity_dir = frames_dir.parent / "disparity"
            prefix = frames_dir.parent.relative_to(self.root).parts
            for left_dir in _left_dirs(frames_dir):
                inner = left_dir.parent.relative_to(frames_dir).parts  # e.g. TRAIN, A, 0001
                subset = subset_of(inner)
                if subset not in self.subsets:
                    continue
                is_test = subset == "flyingthings3d" and any(p.upper() == "TEST" for p in inner)
                frame_split = "test" if is_test else "train"
                if self.split != "all" and frame_split != self.split:
                    continue
                right_dir = left_dir.parent / "right"
                for entry in list_dir(left_dir):
                    stem, suffix = os.path.splitext(entry.name)
                    if suffix.lower() not in IMAGE_SUFFIXES or entry.name.startswith(".") or entry.is_dir():
                        continue
                    left = Path(entry.path)
                    right = right_dir / entry.name
                    if excluded and (
                        path_matches(left, self.root, excluded) or path_matches(right, self.root, excluded)
                    ):
                        continue
                    files.append(
                        SampleFiles(
                            id="/".join((*prefix, *inner, stem)),
                            left=left,
                            right=right,
                            disp=disparity_dir.joinpath(*inner, "left", stem + ".pfm"),
                            extra={"subset": subset, "split": frame_split},
                        )
                    )
        other = next(name for name in PASSES if name != self.pass_)
        if not files and not find_frame_dirs(self.root, self.pass_) and find_frame_dirs(self.root, other):
            # a download of the other pass only (not a split, subset or exclusion that left nothing)
            raise DataError(
                self.root,
                f"no frames_{self.pass_}/ found, but frames_{other}/ is here: read it with "
                f"--option pass_={other} (data.*.options.pass_: {other} in a config)",
            )
        return files

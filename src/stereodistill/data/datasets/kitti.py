"""KITTI stereo 2012 and 2015 from their official ``training``/``testing`` layout.

Only ``XXXXXX_10.png`` frames are stereo pairs with ground truth; the ``_11`` frames (the next time
step, for scene flow) are ignored. GT is a 16-bit PNG holding disparity × 256 with 0 = no GT, read by
the base class through :func:`~stereodistill.data.formats.read_disparity`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from stereodistill.data.datasets.base import DATASETS, SampleFiles, StereoDataset, list_dir
from stereodistill.errors import ConfigError

SPLITS: dict[str, tuple[tuple[str, str], ...]] = {
    "train": (("training", "train"),),
    "test": (("testing", "test"),),
    "all": (("training", "train"), ("testing", "test")),
}
FRAME_SUFFIX = "_10.png"


class KittiDataset(StereoDataset):
    """Shared KITTI reader: subclasses name the left, right and GT folders.

    ``split``: "train" → ``training`` (with GT), "test" → ``testing`` (no GT, ``disp`` None), "all".
    Ids are ``training/000000_10``; a training frame whose GT file is missing is still listed.
    """

    left_dir: ClassVar[str] = ""
    right_dir: ClassVar[str] = ""
    disp_dir: ClassVar[str] = ""

    def __init__(self, root: str | Path, *, split: str = "train", **kwargs: Any) -> None:
        if split not in SPLITS:
            raise ConfigError(f"{self.name} split must be one of {', '.join(SPLITS)}, got {split!r}")
        super().__init__(root, split=split, **kwargs)

    def discover(self) -> list[SampleFiles]:
        files: list[SampleFiles] = []
        for folder, split in SPLITS[self.split]:
            left_dir = self.root / folder / self.left_dir
            if not left_dir.is_dir():
                continue
            entries = list_dir(left_dir)
            names = sorted(
                e.name for e in entries if e.name.endswith(FRAME_SUFFIX) and not e.is_dir()
            )  # a dead link too
            for file_name in names:
                has_gt = folder == "training"
                files.append(
                    SampleFiles(
                        id=f"{folder}/{file_name[: -len('.png')]}",
                        left=left_dir / file_name,
                        right=self.root / folder / self.right_dir / file_name,
                        disp=self.root / folder / self.disp_dir / file_name if has_gt else None,
                        extra={"split": split},
                    )
                )
        return files


@DATASETS.register("kitti2012")
class Kitti2012(KittiDataset):
    """KITTI stereo 2012: colour views ``colored_0``/``colored_1``, GT ``disp_occ``."""

    name = "kitti2012"
    layout = "{training,testing}/colored_0/XXXXXX_10.png, colored_1/XXXXXX_10.png, training/disp_occ/XXXXXX_10.png"
    left_dir = "colored_0"
    right_dir = "colored_1"
    disp_dir = "disp_occ"


@DATASETS.register("kitti2015")
class Kitti2015(KittiDataset):
    """KITTI stereo 2015: views ``image_2``/``image_3``, GT ``disp_occ_0`` (left view)."""

    name = "kitti2015"
    layout = "{training,testing}/image_2/XXXXXX_10.png, image_3/XXXXXX_10.png, training/disp_occ_0/XXXXXX_10.png"
    left_dir = "image_2"
    right_dir = "image_3"
    disp_dir = "disp_occ_0"

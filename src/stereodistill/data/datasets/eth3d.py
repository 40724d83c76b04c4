"""ETH3D two-view stereo from the official archives.

``two_view_training.7z`` extracts to ``two_view_training/<scene>/im0.png, im1.png`` and
``two_view_training_gt.7z`` to ``two_view_training_gt/<scene>/disp0GT.pfm, mask0nocc.png``; people
also unpack the GT into the image folders, so both places are looked at. Images are grayscale (the
image reader repeats them to 3 channels); GT ``inf`` = unknown; mask 255 = non-occluded = evaluated.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from stereodistill.data.datasets.base import DATASETS, SampleFiles, StereoDataset, list_dir
from stereodistill.errors import ConfigError

#: ``two_view_test.7z`` is unpacked into ``two_view_test/`` or, as some download scripts do,
#: ``two_view_testing/``: both are read, and a scene in both counts once (from ``two_view_test/``).
TEST_FOLDERS = (("two_view_test", "test"), ("two_view_testing", "test"))
SPLITS: dict[str, tuple[tuple[str, str], ...]] = {
    "train": (("two_view_training", "train"),),
    "test": TEST_FOLDERS,
    "all": (("two_view_training", "train"), *TEST_FOLDERS),
}
GT_FOLDER = "two_view_training_gt"
GT_NAME = "disp0GT.pfm"
MASK_NAME = "mask0nocc.png"


@DATASETS.register("eth3d")
class ETH3D(StereoDataset):
    """ETH3D two-view pairs.

    ``split``: "train" = ``two_view_training`` (GT from the scene folder or ``two_view_training_gt``),
    "test" = ``two_view_test`` or ``two_view_testing`` (no GT), "all". A training scene without GT is
    still listed with its expected GT path, so loading it names the missing file. Ids are ``two_view_training/<scene>``.
    """

    name = "eth3d"
    layout = (
        "two_view_training/<scene>/im0.png, im1.png with disp0GT.pfm, mask0nocc.png there or in "
        "two_view_training_gt/<scene>/; two_view_test[ing]/<scene>/im0.png, im1.png"
    )

    def __init__(self, root: str | Path, *, split: str = "train", **kwargs: Any) -> None:
        if split not in SPLITS:
            raise ConfigError(f"eth3d split must be one of {', '.join(SPLITS)}, got {split!r}")
        super().__init__(root, split=split, **kwargs)

    def discover(self) -> list[SampleFiles]:
        files: list[SampleFiles] = []
        gt_root = self.root / GT_FOLDER
        seen: dict[tuple[str, str], int] = {}  # (split, scene) → index: one scene in both test folders
        for folder, split in SPLITS[self.split]:
            base = self.root / folder
            if not base.is_dir():
                continue
            entries = list_dir(base)
            scenes = sorted(Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir())
            for scene in scenes:
                left = scene / "im0.png"
                if not (left.is_file() or left.is_symlink()):  # a dead link is listed: loading names it
                    continue
                first = seen.get((split, scene.name))
                if first is not None:  # listed once, and a list may name it by either folder
                    alias = ((f"{folder}/{scene.name}", left),)
                    files[first] = replace(files[first], aliases=files[first].aliases + alias)
                    continue
                seen[(split, scene.name)] = len(files)
                disp = mask = None
                if split == "train":
                    disp, mask = self._ground_truth(scene, gt_root / scene.name)
                files.append(
                    SampleFiles(
                        id=f"{folder}/{scene.name}",
                        left=scene / "im0.png",
                        right=scene / "im1.png",
                        disp=disp,
                        mask=mask,
                        extra={"split": split},
                    )
                )
        return files

    @staticmethod
    def _ground_truth(scene: Path, gt_scene: Path) -> tuple[Path, Path | None]:
        """GT and mask of a training scene: beside the images, else in the ``_gt`` tree.

        When neither holds the GT, its expected path (in the ``_gt`` tree when that exists) is returned.
        The official GT always ships its mask, so a missing one is listed too: loading names it, rather
        than the scene being scored on its occluded pixels without a word.
        """
        for folder in (scene, gt_scene):
            if (folder / GT_NAME).is_file():
                return folder / GT_NAME, folder / MASK_NAME
        expected = gt_scene if gt_scene.parent.is_dir() else scene
        return expected / GT_NAME, expected / MASK_NAME

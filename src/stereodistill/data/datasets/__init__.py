"""Dataset readers, one module per official layout; importing this package registers them all."""

from stereodistill.data.datasets.base import DATASETS, SampleFiles, StereoDataset, build_dataset
from stereodistill.data.datasets.eth3d import ETH3D
from stereodistill.data.datasets.kitti import Kitti2012, Kitti2015, KittiDataset
from stereodistill.data.datasets.middlebury import Middlebury
from stereodistill.data.datasets.pairs import Pairs
from stereodistill.data.datasets.sceneflow import SceneFlow

__all__ = [
    "DATASETS",
    "ETH3D",
    "Kitti2012",
    "Kitti2015",
    "KittiDataset",
    "Middlebury",
    "Pairs",
    "SampleFiles",
    "SceneFlow",
    "StereoDataset",
    "build_dataset",
]

"""Dataset readers, one module per official layout; importing this package registers them all."""

from stereodistill.data.datasets.base import DATASETS, SampleFiles, StereoDataset, build_dataset

__all__ = ["DATASETS", "SampleFiles", "StereoDataset", "build_dataset"]

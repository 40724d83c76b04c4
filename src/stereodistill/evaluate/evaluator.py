"""Run a disparity predictor over a dataset and accumulate the metrics of :mod:`.metrics`.

The predictor is any callable ``(left, right) -> disparity`` on B×3×H×W tensors in [0, 1]; models,
checkpoints and classical baselines are all evaluated through this one loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from stereodistill.data.datasets.base import StereoDataset
from stereodistill.evaluate.metrics import MetricAccumulator

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def evaluate_dataset(
    predict: Predictor,
    dataset: StereoDataset | torch.utils.data.Dataset,
    *,
    progress: Callable[[int, int], None] | None = None,
    limit: int | None = None,
) -> MetricAccumulator:
    """Predict every sample one at a time (images may differ in size) and collect metrics."""
    accumulator = MetricAccumulator()
    total = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(total):
        sample = dataset[index]
        pred = predict(sample["left"][None], sample["right"][None])
        if pred.dim() == 4:
            pred = pred[:, 0]
        accumulator.update(pred[0].cpu(), sample["disp"], sample["valid"], ids=[str(sample["meta"]["id"])])
        if progress is not None:
            progress(index + 1, total)
    return accumulator

"""Run a disparity predictor over a dataset and accumulate the metrics of :mod:`.metrics`.

The predictor is any callable ``(left, right) -> disparity`` on B×3×H×W tensors in [0, 1]; models,
checkpoints and classical baselines are all evaluated through this one loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from stereodistill.data.datasets.base import StereoDataset
from stereodistill.errors import DataError
from stereodistill.evaluate.metrics import MetricAccumulator

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def evaluate_dataset(
    predict: Predictor,
    dataset: StereoDataset | torch.utils.data.Dataset,
    *,
    progress: Callable[[int, int], None] | None = None,
    limit: int | None = None,
    skip_bad: bool = False,
) -> MetricAccumulator:
    """Predict every sample one at a time (images may differ in size) and collect metrics.

    A sample that fails to load stops the run with its :class:`DataError` (naming the file), unless
    ``skip_bad``: then it is recorded in ``accumulator.skipped`` and the run goes on.
    """
    accumulator = MetricAccumulator()
    total = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(total):
        try:
            sample = dataset[index]
        except DataError as exc:
            if not skip_bad:
                raise
            files = getattr(dataset, "files", None)
            accumulator.skipped.append({"id": files[index].id if files else str(index), "error": str(exc)})
            continue
        pred = predict(sample["left"][None], sample["right"][None])
        if pred.dim() == 4:
            pred = pred[:, 0]
        meta = sample["meta"]
        paths = [str(meta["left_path"])] if "left_path" in meta else None
        accumulator.update(pred[0].cpu(), sample["disp"], sample["valid"], ids=[str(meta["id"])], paths=paths)
        accumulator.count_ground_truth(meta.get("gt_coverage", {}))
        if progress is not None:
            progress(index + 1, total)
    return accumulator


def evaluate_model(model: torch.nn.Module, datasets: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Pooled metrics (fractions; EPE in px) of one network on each named dataset, with the number of
    images and of valid pixels they pool over, and the ground-truth pixels left out (and why)."""

    def predict(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return model(left.to(device), right.to(device)).disparity

    results = {}
    for name, dataset in datasets.items():
        accumulator = evaluate_dataset(predict, dataset)
        results[name] = {
            **accumulator.pooled(),
            "images": len(dataset),
            "valid_pixels": int(accumulator.totals["n"]),
            "nonfinite_pixels": int(accumulator.totals["nonfinite"]),  # > 0: the EPE is infinite (null in JSON)
            "ground_truth": accumulator.coverage(),
        }
    return results

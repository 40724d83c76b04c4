"""Precise BatchNorm statistics: recomputed after training over whole training pairs.

During training, BatchNorm's running statistics are a moving average over the last few batches of
*crops*. A stereo network then runs on whole frames, where zero padding, the image border and the
part of the cost volume that falls outside the right view weigh differently, and the last few
batches move the average by chance. Recomputing the statistics after the last step as a plain
average over many uncropped batches (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021; the
train/test resolution gap of Touvron et al., "FixRes", 2019) removes both: on the quickstart's
teacher, trained on 48×96 crops, it took Motorcycle from 2.640 to 1.773 px (docs/results.md).
The weights do not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from stereodistill.train.data import SeededAugment


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers that keep running statistics (the others normalise by each batch's)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]


def _common_window(samples: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's views, each centre-cropped to the smallest height and width among them (pairs of
    one dataset may differ by a few pixels, as KITTI's do)."""
    height = min(s["left"].shape[-2] for s in samples)
    width = min(s["left"].shape[-1] for s in samples)

    def window(view: torch.Tensor) -> torch.Tensor:
        top = (view.shape[-2] - height) // 2
        left = (view.shape[-1] - width) // 2
        return view[..., top : top + height, left : left + width]

    lefts = torch.stack([window(s["left"]) for s in samples])
    rights = torch.stack([window(s["right"]) for s in samples])
    return lefts, rights


@torch.no_grad()
def recompute_batchnorm(
    model: nn.Module,
    dataset: Dataset,
    *,
    batches: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Replace every BatchNorm layer's running mean and variance with their average over ``batches``
    forward passes of ``batch_size`` uncropped training pairs (views only; ``transform``, the run's
    colour augmentation, applied as in training), drawn without repeats while the set lasts, seeded.
    The model is left in eval mode. Returns the number of pairs read (0: no BatchNorm layer)."""
    layers = batchnorm_layers(model)
    if not layers or batches < 1:
        return 0
    generator = torch.Generator().manual_seed(seed)
    count = batches * batch_size
    rounds = -(-count // len(dataset))
    keys = torch.cat([torch.randperm(len(dataset), generator=generator) + r * len(dataset) for r in range(rounds)])
    source = SeededAugment(dataset, transform, seed) if transform is not None else None
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average: every batch weighs the same
    model.train()
    try:
        for b in range(batches):
            chosen = keys[b * batch_size : (b + 1) * batch_size].tolist()
            samples = [source[k] if source is not None else dataset[k % len(dataset)] for k in chosen]
            left, right = _common_window(samples)
            model(left.to(device), right.to(device))
            if progress is not None:
                progress(b + 1, batches)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.eval()
    return count

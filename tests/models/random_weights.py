"""Seeded inputs and random weights for the GwcNet-family regression tests.

The fixtures under ``fixtures/`` were recorded from the original code with weights made by
:func:`randomise`: changing it invalidates them (regenerate with the compare scripts).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

import torch
from torch import nn

from stereodistill.models.base import StereoModel
from stereodistill.runtime import torch_threads

#: px: how far a port's output may lie from the release's recorded output on the same weights. The
#: weights' batch-norm statistics come from a float32 forward (:func:`randomise`) whose rounding depends
#: on the CPU's kernels (AVX2 or AVX-512), and a random network amplifies that: fixtures recorded on one
#: machine were measured 1.3e-4 to 6.6e-4 px off on an AVX-512 EPYC, in float64. A port error (a layer,
#: a key, an order of operations) moves the output by 0.1 px or more.
RELEASE_TOLERANCE = 2e-3


def pair(h: int = 32, w: int = 64, b: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)


def randomise(model: StereoModel, seed: int) -> StereoModel:
    """Random weights and BatchNorm statistics, all drawn from one fixed generator.

    Convolutions get He-normal weights, BN affine parameters random values. Purely random running
    statistics would let activations grow by orders of magnitude through the stacks and saturate
    every softmax (then the output would hide most of the network), so the statistics are measured
    on a random batch in training mode first and then perturbed at random per channel.
    """
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=g) * math.sqrt(2.0 / param[0].numel()))
            elif name.endswith("weight"):
                param.copy_(torch.rand(param.shape, generator=g) + 0.5)
            else:
                param.copy_(torch.randn(param.shape, generator=g) * 0.1)
        momenta = [norm.momentum for norm in norms]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # one batch: running statistics = that batch's statistics
        training = model.training
        model.train()
        model(*pair(64, 128, seed=seed + 1000))
        model.train(training)
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
            std = norm.running_var.sqrt()
            norm.running_mean.add_(torch.randn(std.shape, generator=g) * 0.1 * std)
            norm.running_var.mul_(torch.rand(std.shape, generator=g) * 0.5 + 0.8)
    return model


def one_thread() -> AbstractContextManager[None]:
    """One CPU thread inside: ``randomise`` measures batch-norm statistics with a float32 forward whose
    rounding depends on the thread count, and a random network amplifies that to 1e-3 px in its
    output; the port fixtures were recorded with weights drawn at one thread."""
    return torch_threads(1)

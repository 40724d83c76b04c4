"""Optimiser and learning-rate schedule.

The learning rate is a pure function of the global step (and the stage's base rate), set on the
optimiser before every step: nothing about it needs saving, and a resumed run continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from stereodistill.train.config import OptimConfig

ONECYCLE_START = 1 / 25  # as torch's OneCycleLR: start and end far below the peak
ONECYCLE_WARMUP = 0.3


def build_optimizer(params: Iterable[torch.nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return cls(list(params), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def lr_factor(config: OptimConfig, step: int, total: int, epoch: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total``. ``cosine`` and
    ``onecycle`` reach their floor at ``step == total``, one past the last, so the last step still
    moves the weights a little (as PyTorch's ``CosineAnnealingLR`` with ``T_max = total``)."""
    if config.schedule == "onecycle":
        warm = max(config.warmup_steps, int(ONECYCLE_WARMUP * total), 1)
        if step < warm:
            return ONECYCLE_START + (1 - ONECYCLE_START) * step / warm
        t = (step - warm) / max(total - warm, 1)
        return ONECYCLE_START * 1e-2 + (1 - ONECYCLE_START * 1e-2) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    warm = config.warmup_steps
    factor = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
    if config.schedule == "cosine":
        t = max(step - warm, 0) / max(total - warm, 1)
        factor *= 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    elif config.schedule == "step":
        factor *= config.gamma ** sum(1 for m in config.milestones if epoch >= m)
    return factor


def pull_toward(params: list[torch.Tensor], start: list[torch.Tensor], rate: float) -> None:
    """Move every parameter ``rate`` of the way back to its starting value, as one fused update:
    decoupled decay toward the start instead of toward zero (L2-SP, Li et al., ICML 2018), which
    keeps a fine-tuned network near what it knew before."""
    with torch.no_grad():
        torch._foreach_add_(params, torch._foreach_sub(params, start), alpha=-rate)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

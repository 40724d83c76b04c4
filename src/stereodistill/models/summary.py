"""Size and cost of a network: parameters actually used, MACs, and its taps with shapes.

Parameters are counted on the modules a forward pass calls (in training mode, where every head
runs), so a layer a release creates but never uses does not inflate the figure. MACs come from
``torch.utils.flop_counter`` (multiply-accumulates = counted FLOPs / 2) for one eval-mode forward at
batch 1. Both run on the meta device: no memory for activations, no arithmetic, seconds at 544×960.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from stereodistill.models.base import StereoModel


@dataclass
class ModelSummary:
    arch: str
    height: int
    width: int
    params: int  # on modules used in the forward pass
    params_total: int
    macs: int  # one eval forward, batch 1
    taps: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def _ghost(model: StereoModel) -> StereoModel:
    return copy.deepcopy(model).to("meta")


def used_parameters(model: StereoModel, height: int = 64, width: int = 128) -> int:
    """Parameters of every module whose forward runs in a training-mode pass (each tensor once)."""
    ghost = _ghost(model).train()
    called: set[nn.Module] = set()
    hooks = [m.register_forward_pre_hook(lambda mod, _args: called.add(mod)) for m in ghost.modules()]
    image = torch.empty(2, 3, height, width, device="meta")  # batch 2: batch norm needs > 1 value in training
    try:
        ghost(image, image)
    finally:
        for hook in hooks:
            hook.remove()
    seen: set[int] = set()
    total = 0
    for module in called:
        for param in module.parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                total += param.numel()
    return total


def count_macs(model: StereoModel, height: int, width: int) -> int:
    ghost = _ghost(model).eval()
    image = torch.empty(1, 3, height, width, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        ghost(image, image)
    return counter.get_total_flops() // 2


def summarize(model: StereoModel, height: int = 256, width: int = 512) -> ModelSummary:
    return ModelSummary(
        arch=model.arch,
        height=height,
        width=width,
        params=used_parameters(model),
        params_total=sum(p.numel() for p in model.parameters()),
        macs=count_macs(model, height, width),
        taps=model.tap_shapes(height, width, training=False),
    )

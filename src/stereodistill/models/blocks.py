"""Building blocks shared by the zoo, one place each.

Module layouts (a ``Sequential`` of convolution then batch norm, ``conv1``/``conv2`` in a residual
block, ``conv1``…``conv6``/``redir1``/``redir2`` in an hourglass) follow the PSMNet/GwcNet family's
releases, so that the parameter names of an original checkpoint map onto ours one to one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.errors import ConfigError
from stereodistill.models.numerics import reference


def onednn_inference(x: torch.Tensor) -> bool:
    """Whether a convolution of ``x`` may call oneDNN directly: float CPU inference, oneDNN present,
    and no graph being captured (``torch.export``, ``torch.compile``, ONNX export and tracing see
    the plain convolution)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
    )


def cpu_autocast_training(x: torch.Tensor) -> bool:
    """Whether ``x`` is on the CPU under autocast with autograd recording: a training step in bf16."""
    return x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.is_grad_enabled()


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that takes oneDNN's kernel where PyTorch's CPU dispatch would not.

    For batch-1 float CPU input with ``groups == 1``, a kernel of at most 3 and N·C·D·H ≤ 20480 (the
    hourglass bottlenecks, e.g. 1×64×12×16×32), PyTorch picks its reference ``slow_conv3d`` path,
    about five times slower there than oneDNN. Exactly that case is rerouted, in inference only;
    everything else goes through PyTorch's own dispatch. Same parameters and state-dict keys. Graph
    capture (``torch.export``, ``torch.compile``, ONNX export) sees the plain convolution. Under CPU
    autocast, a training step's 3-D convolutions run in float32 (see :meth:`_conv_forward`).
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if cpu_autocast_training(input):
            # oneDNN's bf16 weight gradient of a stride-1 3-D convolution on small inputs (the hourglass
            # bottlenecks of a training crop) reads memory it never wrote (torch 2.13): for 2×32×2×4×8
            # every call gave NaN, inf or values 15× off (PyTorch's own kernel: 0.4 %, bf16's rounding);
            # for 4×64×2×3×6, 3 calls in 60 were non-finite. Computed in float32 instead, as without
            # autocast (tests/models/test_blocks.py).
            with torch.autocast("cpu", enabled=False):
                return super()._conv_forward(input.float(), weight.float(), None if bias is None else bias.float())
        if (
            input.dim() == 5
            and input.shape[0] == 1
            and self.groups == 1
            and max(self.kernel_size[1:]) <= 3
            and input.shape[1] * input.shape[2] * input.shape[3] <= 20480
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and onednn_inference(input)
            and not reference()
        ):
            return torch.mkldnn_convolution(
                input.contiguous(), weight.contiguous(), bias, self.padding, self.stride, self.dilation, self.groups
            )
        return super()._conv_forward(input, weight, bias)


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> nn.Sequential:
    """2-D convolution (no bias) + batch norm; a dilated convolution pads by its dilation."""
    return nn.Sequential(
        nn.Conv2d(
            in_ch,
            out_ch,
            kernel,
            stride=stride,
            padding=dilation if dilation > 1 else pad,
            dilation=dilation,
            bias=False,
        ),
        nn.BatchNorm2d(out_ch),
    )


def conv_bn_3d(in_ch: int, out_ch: int, kernel: int, stride: int, pad: int) -> nn.Sequential:
    """3-D convolution (no bias) + batch norm."""
    return nn.Sequential(Conv3d(in_ch, out_ch, kernel, stride=stride, padding=pad, bias=False), nn.BatchNorm3d(out_ch))


def conv_bn_relu_3d(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, pad: int = 1) -> nn.Sequential:
    return nn.Sequential(conv_bn_3d(in_ch, out_ch, kernel, stride, pad), nn.ReLU(inplace=True))


def conv_bn_pair_3d(in_ch: int, mid_ch: int, out_ch: int, final_relu: bool) -> nn.Sequential:
    """Two 3×3×3 conv+BN with a ReLU between (and after, if ``final_relu``), laid out flat as the
    releases name them (``dres0.0.0``, ``dres0.2.0``): the entry (``dres0``) and residual (``dres1``)
    stages of every 3-D aggregation in the family."""
    layers: list[nn.Module] = [conv_bn_3d(in_ch, mid_ch, 3, 1, 1), nn.ReLU(inplace=True)]
    layers.append(conv_bn_3d(mid_ch, out_ch, 3, 1, 1))
    if final_relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def init_release_weights(model: nn.Module) -> None:
    """The family's initialisation: convolutions N(0, 2/n) with n = kernel volume × out channels,
    batch norm to identity, linear biases zero (transposed convolutions keep PyTorch's), so that a
    network trained from scratch starts where the original did."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Conv3d):
            fan_out = math.prod(module.kernel_size) * module.out_channels
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm3d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)


def check_hourglass_disparity(arch: str, max_disp: int) -> None:
    """A 3-D hourglass halves the disparity axis (D/4) twice and doubles it back: D/4 must divide by 4."""
    if max_disp % 16:
        raise ConfigError(
            f"{arch}: max_disp must be a multiple of 16 (its hourglasses need D/4 % 4 == 0), got {max_disp}"
        )


class BasicBlock(nn.Module):
    """ResNet basic block without the final ReLU (as in PSMNet/GwcNet)."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, downsample: nn.Module | None, pad: int, dilation: int
    ) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(conv_bn(in_ch, out_ch, 3, stride, pad, dilation), nn.ReLU(inplace=True))
        self.conv2 = conv_bn(out_ch, out_ch, 3, 1, pad, dilation)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + (x if self.downsample is None else self.downsample(x))


def make_layer(in_ch: int, out_ch: int, blocks: int, stride: int, pad: int, dilation: int) -> nn.Sequential:
    """A stage of ``blocks`` basic blocks; the first one projects with a 1×1 conv when shapes change."""
    downsample = None
    if stride != 1 or in_ch != out_ch:
        downsample = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
        )
    layers = [BasicBlock(in_ch, out_ch, stride, downsample, pad, dilation)]
    layers += [BasicBlock(out_ch, out_ch, 1, None, pad, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class Hourglass(nn.Module):
    """GwcNet's 3-D encoder-decoder: two stride-2 stages down, two transposed convolutions up,
    1×1×1 skip connections (``redir``) at both scales. Subclasses may transform the bottleneck."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.conv1 = conv_bn_relu_3d(c, 2 * c, 3, 2, 1)
        self.conv2 = conv_bn_relu_3d(2 * c, 2 * c, 3, 1, 1)
        self.conv3 = conv_bn_relu_3d(2 * c, 4 * c, 3, 2, 1)
        self.conv4 = conv_bn_relu_3d(4 * c, 4 * c, 3, 1, 1)
        self.conv5 = nn.Sequential(
            nn.ConvTranspose3d(4 * c, 2 * c, 3, padding=1, output_padding=1, stride=2, bias=False),
            nn.BatchNorm3d(2 * c),
        )
        self.conv6 = nn.Sequential(
            nn.ConvTranspose3d(2 * c, c, 3, padding=1, output_padding=1, stride=2, bias=False), nn.BatchNorm3d(c)
        )
        self.redir1 = conv_bn_3d(c, c, 1, 1, 0)
        self.redir2 = conv_bn_3d(2 * c, 2 * c, 1, 1, 0)

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv2 = self.conv2(self.conv1(x))
        conv4 = self.bottleneck(self.conv4(self.conv3(conv2)))
        conv5 = F.relu(self.conv5(conv4) + self.redir2(conv2), inplace=True)
        return F.relu(self.conv6(conv5) + self.redir1(x), inplace=True)


def classifier(channels: int) -> nn.Sequential:
    """The 3-D head that turns an aggregated volume into one logit per disparity (``classif*``).

    Laid out flat (conv+BN, ReLU, conv) as the family releases it: ``0.0``, ``0.1``, ``2``.
    """
    return nn.Sequential(
        conv_bn_3d(channels, channels, 3, 1, 1),
        nn.ReLU(inplace=True),
        Conv3d(channels, 1, 3, padding=1, stride=1, bias=False),
    )


def soft_argmin(prob: torch.Tensor) -> torch.Tensor:
    """Expected disparity Σ_d d·p(d) over dim 1 of a B×D×H×W distribution (``disparity_regression``)."""
    values = torch.arange(prob.shape[1], dtype=prob.dtype, device=prob.device).view(1, -1, 1, 1)
    return (prob * values).sum(1)


def full_resolution_logits(logits: torch.Tensor, max_disp: int, height: int, width: int) -> torch.Tensor:
    """B×1×D'×H'×W' (or B×D'×H'×W') logits → B×D×H×W by trilinear upsampling, as the family does."""
    if logits.dim() == 4:
        logits = logits.unsqueeze(1)
    return F.interpolate(logits, size=(max_disp, height, width), mode="trilinear", align_corners=False).squeeze(1)


def regress(logits: torch.Tensor, max_disp: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution logits → (full-resolution distribution B×D×H×W, soft-argmin disparity B×H×W)."""
    prob = F.softmax(full_resolution_logits(logits, max_disp, height, width), dim=1)
    return prob, soft_argmin(prob)


def attention_patch_convs(groups: int = 40, splits: tuple[int, int, int] = (8, 16, 16)) -> nn.ModuleDict:
    """ACVNet's multi-level patch convolutions over a group-wise volume, as four depthwise 1×3×3 convs.

    ``patch`` runs over all groups; ``patch_l1``/``l2``/``l3`` then run over consecutive group slices
    with dilations 1/2/3. Returned as a dict so a network can assign them under its release's names.
    """
    if sum(splits) != groups:
        raise ValueError(f"group slices {splits} do not add up to {groups} groups")

    def depthwise(channels: int, dilation: int) -> nn.Conv3d:
        return Conv3d(
            channels,
            channels,
            kernel_size=(1, 3, 3),
            stride=1,
            dilation=dilation,
            groups=channels,
            padding=(0, dilation, dilation),
            bias=False,
        )

    return nn.ModuleDict(
        {
            "patch": depthwise(groups, 1),
            "patch_l1": depthwise(splits[0], 1),
            "patch_l2": depthwise(splits[1], 2),
            "patch_l3": depthwise(splits[2], 3),
        }
    )


def apply_attention_patches(
    volume: torch.Tensor, patch: nn.Module, patch_l1: nn.Module, patch_l2: nn.Module, patch_l3: nn.Module
) -> torch.Tensor:
    """``patch`` over the whole group-wise volume, then the three dilated convs over its group slices."""
    volume = patch(volume)
    a = patch_l1.in_channels
    b = a + patch_l2.in_channels
    return torch.cat((patch_l1(volume[:, :a]), patch_l2(volume[:, a:b]), patch_l3(volume[:, b:])), dim=1)

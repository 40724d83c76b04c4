"""Windowed multi-head self-attention over a 3-D cost volume (ACVNet's ``attention_block``).

ACVNet and the DSNet teacher put this block at the bottleneck of every 3-D hourglass: the volume
is cut into non-overlapping windows of ``window`` = (disparity, height, width) cells, every cell is
a token of C channels, tokens attend to the tokens of their own window only (plain scaled
dot-product attention, no position bias), and a 1×1×1 convolution mixes the heads' outputs.
Parameter names (``qkv_3d``, ``final1x1``) are those of the releases.

Sizes that the window does not divide are padded with zeros at the far end of each axis, and the
padded cells are cropped off the output. Which padded cells a real cell may attend to follows the
original exactly where the original runs, because released checkpoints were evaluated that way:

* height and width both padded: real and padded cells do not see each other (additive −1000);
* only one of height or width padded: the original's mask degenerates (its "padded" marker covers
  every cell), so nothing is masked and the padded cells (whose tokens are the projection biases)
  take part in the attention. Evaluating the releases at SceneFlow and KITTI sizes hits this case
  (e.g. a 544×960 input gives a 34×60 bottleneck), so it is reproduced, not fixed;
* disparity: the original cannot run when the window does not divide it (its reshape fails). Here
  the disparity axis is padded too and masked like the first case, so the result on the real
  cells equals attention over windows that are shorter along disparity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereodistill.models.blocks import Conv3d

#: The original adds this to the logits of token pairs that must not see each other.
MASK_VALUE = -1000.0


class WindowAttention3d(nn.Module):
    """Self-attention within (d, h, w) windows of a B×C×D×H×W volume; returns the same shape."""

    def __init__(self, channels: int, num_heads: int = 16, window: tuple[int, int, int] = (4, 4, 4)) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels do not split into {num_heads} heads")
        self.channels = channels
        self.num_heads = num_heads
        self.window = tuple(window)
        self.scale = (channels // num_heads) ** -0.5
        self.qkv_3d = nn.Linear(channels, 3 * channels, bias=True)
        self.final1x1 = Conv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, depth, height, width = x.shape
        wd, wh, ww = self.window
        pads = ((-depth) % wd, (-height) % wh, (-width) % ww)
        x = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))
        grid = (x.shape[2] // wd, x.shape[3] // wh, x.shape[4] // ww)
        tokens = self._to_windows(x)  # B×windows×cells×C

        heads, head_dim = self.num_heads, channels // self.num_heads
        qkv = self.qkv_3d(tokens).reshape(batch, tokens.shape[1], tokens.shape[2], 3, heads, head_dim)
        query, key, value = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each B×windows×heads×cells×hd
        logits = (query @ key.transpose(-2, -1)) * self.scale
        bias = self._padding_bias(x.shape[2:], pads, x.device, logits.dtype)
        if bias is not None:
            logits = logits + bias
        out = logits.softmax(dim=-1) @ value

        out = out.view(batch, *grid, heads, wd, wh, ww, head_dim).permute(0, 4, 8, 1, 5, 2, 6, 3, 7)
        out = out.reshape(batch, channels, *x.shape[2:])[:, :, :depth, :height, :width]
        return self.final1x1(out)

    def _to_windows(self, volume: torch.Tensor) -> torch.Tensor:
        """B×C×D×H×W (divisible by the window) → B×windows×cells×C, windows and cells in (d, h, w) order."""
        batch, channels, depth, height, width = volume.shape
        wd, wh, ww = self.window
        windows = volume.view(batch, channels, depth // wd, wd, height // wh, wh, width // ww, ww)
        windows = windows.permute(0, 2, 4, 6, 3, 5, 7, 1)
        return windows.reshape(batch, -1, wd * wh * ww, channels)

    def _padding_bias(
        self, padded: torch.Size, pads: tuple[int, int, int], device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor | None:
        """1×windows×1×cells×cells additive mask keeping real and padded cells apart, or None."""
        pad_d, pad_h, pad_w = pads
        mask_plane = pad_h > 0 and pad_w > 0  # one-sided padding masks nothing in the original
        if not (mask_plane or pad_d):
            return None
        depth, height, width = padded
        # A code per cell: bit 0 "padded in the height/width plane", bit 1 "padded along disparity".
        code = torch.zeros(1, 1, depth, height, width, device=device)
        if mask_plane:
            code[..., height - pad_h :, :] = 1
            code[..., :, width - pad_w :] = 1
        if pad_d:
            code[:, :, depth - pad_d :] += 2
        cells = self._to_windows(code).squeeze(-1)  # 1×windows×cells
        apart = cells.unsqueeze(-1) != cells.unsqueeze(-2)
        bias = torch.zeros(apart.shape, device=device, dtype=dtype).masked_fill(apart, MASK_VALUE)
        return bias.unsqueeze(2)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_heads={self.num_heads}, window={self.window}"

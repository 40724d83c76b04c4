"""Windowed 3-D self-attention (ACVNet's attention_block): maths, padding semantics, any size."""

import pytest
import torch
import torch.nn.functional as F

from stereodistill.models.attention3d import WindowAttention3d


def block(channels: int = 8, heads: int = 2, window=(2, 2, 2), seed: int = 0) -> WindowAttention3d:
    torch.manual_seed(seed)
    attention = WindowAttention3d(channels, heads, window)
    with torch.no_grad():
        for p in attention.parameters():
            p.normal_(0, 0.5)
    return attention.eval()


def volume(*size: int, channels: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, channels, *size, generator=torch.Generator().manual_seed(seed))


def reference(attention: WindowAttention3d, x: torch.Tensor) -> torch.Tensor:
    """Window by window, head by head, for sizes the window divides."""
    _, channels, depth, height, width = x.shape
    wd, wh, ww = attention.window
    heads, hd = attention.num_heads, channels // attention.num_heads
    out = torch.empty_like(x)
    for z in range(0, depth, wd):
        for y in range(0, height, wh):
            for c in range(0, width, ww):
                cells = x[:, :, z : z + wd, y : y + wh, c : c + ww]
                tokens = cells.flatten(2).transpose(1, 2)  # B×n×C
                q, k, v = attention.qkv_3d(tokens).chunk(3, dim=-1)
                mixed = []
                for h in range(heads):
                    part = slice(h * hd, (h + 1) * hd)
                    weights = torch.softmax(q[..., part] @ k[..., part].transpose(1, 2) * hd**-0.5, dim=-1)
                    mixed.append(weights @ v[..., part])
                out[:, :, z : z + wd, y : y + wh, c : c + ww] = torch.cat(mixed, -1).transpose(1, 2).view_as(cells)
    return attention.final1x1(out)


def test_parameter_names_follow_the_release():
    assert set(dict(WindowAttention3d(128).named_parameters())) == {
        "qkv_3d.weight",
        "qkv_3d.bias",
        "final1x1.weight",
        "final1x1.bias",
    }
    assert WindowAttention3d(128).qkv_3d.out_features == 384


def test_matches_windowed_attention_written_out():
    attention = block()
    x = volume(4, 4, 6)
    with torch.no_grad():
        torch.testing.assert_close(attention(x), reference(attention, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1, 1), (3, 5, 7), (2, 2, 3), (5, 2, 2), (4, 3, 9)])
def test_any_size_keeps_its_shape_and_runs_backward(size):
    attention = block(window=(4, 4, 4)).train()
    x = volume(*size).requires_grad_()
    out = attention(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all()


def test_disparity_padding_is_masked():
    """D=3 in windows of 4 equals windows of 3: padded disparity cells are invisible."""
    padded, exact = block(window=(4, 2, 2)), block(window=(3, 2, 2))
    x = volume(3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(padded(x), exact(x))


def test_height_and_width_padding_together_are_masked():
    padded, exact = block(window=(2, 4, 4)), block(window=(2, 3, 3))
    x = volume(2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(padded(x), exact(x))


@pytest.mark.parametrize("pad", [(0, 0, 0, 1), (0, 1, 0, 0)])
def test_one_sided_padding_is_visible_as_in_the_release(pad):
    """Padding only height or only width masks nothing in the original: the padded zero cells take
    part, exactly as if the input had been zero-padded before the block."""
    attention = block(window=(2, 4, 4))
    x = volume(2, 4 - pad[3], 4 - pad[1])
    with torch.no_grad():
        explicit = attention(F.pad(x, pad))[..., : x.shape[-2], : x.shape[-1]]
        torch.testing.assert_close(attention(x), explicit)
        assert not torch.allclose(attention(x), block(window=(2, 4 - pad[3], 4 - pad[1]))(x))


def test_runs_on_the_meta_device():
    attention = block(window=(4, 4, 4)).to("meta")
    assert attention(torch.empty(1, 8, 3, 5, 6, device="meta")).shape == (1, 8, 3, 5, 6)

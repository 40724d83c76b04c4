"""Reference numerics take the original code's paths, bit for bit; the fast paths stay the default."""

from __future__ import annotations

import torch

from stereodistill.models import blocks
from stereodistill.models.cost_volume import (
    concat_volume,
    concat_volume_loop,
    groupwise_correlation_volume,
    groupwise_correlation_volume_loop,
)
from stereodistill.models.numerics import reference, reference_numerics


def test_the_switch_is_scoped_and_off_by_default():
    assert not reference()
    with reference_numerics():
        assert reference()
        with reference_numerics(False):
            assert not reference()
        assert reference()
    assert not reference()


def test_volumes_take_the_loops_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    left, right = torch.randn(1, 16, 4, 20, generator=g), torch.randn(1, 16, 4, 20, generator=g)
    with reference_numerics():
        grouped = groupwise_correlation_volume(left, right, 6, 4)
        assert torch.equal(grouped, groupwise_correlation_volume_loop(left, right, 6, 4))
        assert torch.equal(concat_volume(left, right, 6), concat_volume_loop(left, right, 6))
        kept = concat_volume(left, right, 6, keep_left=True)
    assert torch.equal(kept, concat_volume(left, right, 6, keep_left=True))  # the fast path agrees


def test_conv3d_takes_torch_s_own_path():
    conv = blocks.Conv3d(8, 8, 3, padding=1, bias=False).eval()
    x = torch.randn(1, 8, 4, 8, 16)
    plain = torch.nn.functional.conv3d(x, conv.weight, None, 1, 1)
    with torch.no_grad(), reference_numerics():
        assert torch.equal(conv(x), plain)

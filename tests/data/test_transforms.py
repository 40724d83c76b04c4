import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stereodistill.data.transforms import (
    ColorJitter,
    Compose,
    Padding,
    PadToMultiple,
    RandomCrop,
    VerticalFlip,
    pad_to_multiple,
    padding_for,
)


def make_sample(h=10, w=14):
    g = torch.Generator().manual_seed(0)
    left = torch.rand(3, h, w, generator=g)
    # Encode each pixel's coordinates so crops/flips can be checked exactly.
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    disp = (ys * 100 + xs).float()
    return {
        "left": left,
        "right": left.roll(1, -1),
        "disp": disp,
        "valid": torch.ones(h, w, dtype=torch.bool),
        "meta": {"id": "x"},
    }


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.sampled_from([1, 4, 8, 32]),
    st.sampled_from(["top_right", "symmetric"]),
)
def test_pad_then_crop_is_exact(h, w, multiple, mode):
    x = torch.randn(2, 3, h, w)
    padded, padding = pad_to_multiple(x, multiple, mode)
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert padded.shape[-2] - h < multiple and padded.shape[-1] - w < multiple
    assert torch.equal(padding.crop(padded), x)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.sampled_from([4, 8, 16, 32]),
    st.sampled_from([1, 2, 4]),
    st.sampled_from(["top_right", "symmetric"]),
)
def test_a_coarse_map_of_the_padded_input_is_cropped_to_the_cells_that_cover_the_image(h, w, multiple, scale, mode):
    padding = padding_for(h, w, multiple, mode)
    padded = (h + padding.top + padding.bottom, w + padding.left + padding.right)
    # Each cell holds the index of the first padded-input row/column it covers.
    rows = torch.arange(0, padded[0], scale).view(-1, 1).expand(-1, padded[1] // scale)
    cols = torch.arange(0, padded[1], scale).view(1, -1).expand(padded[0] // scale, -1)
    cropped_rows, cropped_cols = padding.crop_scaled(rows, padded), padding.crop_scaled(cols, padded)
    if mode == "top_right":
        assert cropped_rows.shape == (-(-h // scale), -(-w // scale))
    # Every kept cell overlaps the image, and every cell overlapping the image is kept.
    first_row, first_col = padding.top, padding.left
    kept = set(cropped_rows[:, 0].tolist())
    assert kept == {r for r in rows[:, 0].tolist() if r + scale > first_row and r < first_row + h}
    kept = set(cropped_cols[0].tolist())
    assert kept == {c for c in cols[0].tolist() if c + scale > first_col and c < first_col + w}


def test_a_map_at_no_integer_scale_of_the_padded_input_is_left_alone():
    padding = padding_for(10, 14, 8)
    x = torch.zeros(1, 5, 6)  # 16x16 padded: 5 rows is no integer scale
    assert padding.crop_scaled(x, (16, 16)) is x


def test_top_right_padding_keeps_the_left_border_and_bottom():
    padding = padding_for(10, 14, 8, "top_right")
    assert padding == Padding(top=6, bottom=0, left=0, right=2)
    x = torch.arange(10 * 14.0).reshape(1, 10, 14)
    padded, _ = pad_to_multiple(x, 8)
    assert torch.equal(padded[0, 6:, :14], x[0])
    assert padded[0, :6].abs().sum() == 0


def test_symmetric_padding_splits_sides():
    assert padding_for(10, 13, 8, "symmetric") == Padding(top=3, bottom=3, left=1, right=2)
    with pytest.raises(ValueError, match="unknown padding mode"):
        padding_for(10, 13, 8, "bottom")


def test_pad_sample_marks_padding_invalid_and_records_it():
    sample = PadToMultiple(8)(make_sample())
    assert sample["left"].shape == (3, 16, 16)
    assert sample["valid"].shape == (16, 16)
    assert sample["valid"].sum() == 10 * 14
    assert not sample["valid"][:6].any()
    assert sample["meta"]["pad"] == (6, 0, 0, 2)
    assert torch.equal(Padding(*sample["meta"]["pad"]).crop(sample["disp"]), make_sample()["disp"])


def test_random_crop_cuts_views_and_gt_at_the_same_place():
    torch.manual_seed(3)
    base = make_sample()
    crop = RandomCrop(4, 6)(base)
    assert crop["left"].shape == (3, 4, 6) and crop["disp"].shape == (4, 6)
    top, left = divmod(int(crop["disp"][0, 0]), 100)
    assert torch.equal(crop["left"], base["left"][:, top : top + 4, left : left + 6])
    assert torch.equal(crop["right"], base["right"][:, top : top + 4, left : left + 6])


def test_random_crop_pads_small_images_with_invalid_gt():
    crop = RandomCrop(12, 20)(make_sample())
    assert crop["left"].shape == (3, 12, 20)
    assert crop["valid"].sum() == 10 * 14


def test_vertical_flip_flips_everything_together():
    base = make_sample()
    flipped = VerticalFlip(p=1.0)(base)
    assert torch.equal(flipped["left"], base["left"].flip(-2))
    assert torch.equal(flipped["disp"], base["disp"].flip(-2))
    assert VerticalFlip(p=0.0)(base) is base


def test_color_jitter_keeps_geometry_and_range_and_can_be_asymmetric():
    torch.manual_seed(0)
    base = make_sample()
    out = ColorJitter(asymmetric_p=1.0)(base)
    assert torch.equal(out["disp"], base["disp"])
    for key in ("left", "right"):
        assert out[key].shape == base[key].shape
        assert out[key].min() >= 0.0 and out[key].max() <= 1.0
    # Symmetric jitter: the right view is the rolled left view, so it must stay exactly that.
    sym = ColorJitter(asymmetric_p=0.0)(base)
    assert torch.allclose(sym["right"], sym["left"].roll(1, -1), atol=1e-6)
    assert not torch.allclose(out["right"], out["left"].roll(1, -1), atol=1e-3)


def test_compose_applies_in_order():
    torch.manual_seed(0)
    out = Compose([RandomCrop(8, 8), PadToMultiple(16)])(make_sample())
    assert out["left"].shape == (3, 16, 16)

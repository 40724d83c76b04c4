import pytest
import torch

from stereodistill.models.cost_volume import (
    concat_volume,
    concat_volume_loop,
    correlation_volume,
    groupwise_correlation_volume,
    groupwise_correlation_volume_loop,
)

SHAPES = [
    ((2, 40, 8, 16), 4, 10),  # typical: D smaller than W
    ((1, 8, 5, 7), 2, 12),  # D larger than W: high disparities see nothing
    ((1, 16, 3, 33), 4, 9),  # width not a multiple of the block
    ((1, 4, 2, 5), 1, 1),  # a single disparity
]


@pytest.mark.parametrize(("shape", "groups", "max_disp"), SHAPES)
@pytest.mark.parametrize("block", [1, 3, 32])
# One group at a time; three of four groups, then one (a partial last chunk); all groups at once.
@pytest.mark.parametrize("chunk_bytes", [1, "three_groups", 2**30])
def test_groupwise_matches_per_disparity_loop(shape, groups, max_disp, block, chunk_bytes):
    g = torch.Generator().manual_seed(0)
    left, right = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    expected = groupwise_correlation_volume_loop(left, right, max_disp, groups)
    if chunk_bytes == "three_groups":
        width = -(-shape[3] // min(block, shape[3])) * min(block, shape[3])
        chunk_bytes = 3 * shape[0] * shape[2] * width * (min(block, shape[3]) + max_disp - 1) * 4
    got = groupwise_correlation_volume(left, right, max_disp, groups, block=block, chunk_bytes=chunk_bytes)
    assert got.shape == (shape[0], groups, max_disp, shape[2], shape[3])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("shape", "groups", "max_disp"), SHAPES)
def test_correlation_is_one_group(shape, groups, max_disp):
    g = torch.Generator().manual_seed(1)
    left, right = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    torch.testing.assert_close(
        correlation_volume(left, right, max_disp), groupwise_correlation_volume_loop(left, right, max_disp, 1)
    )


@pytest.mark.parametrize(("shape", "groups", "max_disp"), SHAPES)
@pytest.mark.parametrize("grad", [False, True])
def test_concat_matches_per_disparity_loop(shape, groups, max_disp, grad):
    g = torch.Generator().manual_seed(2)
    left, right = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    expected = concat_volume_loop(left, right, max_disp)
    if grad:  # the autograd path builds the volume differently
        left.requires_grad_(True)
    assert torch.equal(concat_volume(left, right, max_disp), expected)
    # ACVNet's variant keeps the left features where x − d < 0.
    kept = concat_volume(left, right, max_disp, keep_left=True)
    assert torch.equal(kept[:, shape[1] :], expected[:, shape[1] :])
    assert torch.equal(kept[:, : shape[1]], left.detach().unsqueeze(2).expand(-1, -1, max_disp, -1, -1))


def test_concat_gradients_match_the_loop():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(2, 3, 4, 9, generator=g, requires_grad=True)
    b = torch.randn(2, 3, 4, 9, generator=g, requires_grad=True)
    weights = torch.randn(2, 6, 5, 4, 9, generator=g)
    (concat_volume(a, b, 5) * weights).sum().backward()
    a2, b2 = a.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
    (concat_volume_loop(a2, b2, 5) * weights).sum().backward()
    torch.testing.assert_close(a.grad, a2.grad)  # sums of the same terms, in another order
    torch.testing.assert_close(b.grad, b2.grad)


def test_volumes_follow_the_disparity_convention():
    # right = left shifted by 3 columns (left x matches right x − 3): correlation peaks at d = 3.
    g = torch.Generator().manual_seed(3)
    left = torch.randn(1, 16, 4, 20, generator=g)
    right = torch.roll(left, -3, dims=-1)
    volume = groupwise_correlation_volume(left, right, 8, 4)
    assert (volume[0, :, :, :, 5:15].mean((0, 2)).argmax(0) == 3).all()


@pytest.mark.parametrize("chunk_bytes", [1, 2**30])
def test_gradients_flow_like_the_loop(chunk_bytes):
    g = torch.Generator().manual_seed(4)
    a1, b1 = torch.randn(1, 8, 3, 9, generator=g, requires_grad=True), torch.randn(1, 8, 3, 9, generator=g)
    b1.requires_grad_(True)
    a2, b2 = a1.detach().clone().requires_grad_(True), b1.detach().clone().requires_grad_(True)
    groupwise_correlation_volume(a1, b1, 5, 2, chunk_bytes=chunk_bytes).square().sum().backward()
    groupwise_correlation_volume_loop(a2, b2, 5, 2).square().sum().backward()
    torch.testing.assert_close(a1.grad, a2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-5, atol=1e-6)


def test_training_graph_has_no_whole_volume_slice_copies():
    """In-place chunk writes under autograd would copy the whole gradient once per chunk."""
    a = torch.randn(1, 8, 3, 9, requires_grad=True)
    volume = groupwise_correlation_volume(a, torch.randn(1, 8, 3, 9), 5, 4, chunk_bytes=1)
    seen, stack = set(), [volume.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    assert not any("CopySlices" in type(node).__name__ for node in seen)


def test_bad_arguments():
    x = torch.zeros(1, 6, 2, 4)
    with pytest.raises(ValueError, match="groups"):
        groupwise_correlation_volume(x, x, 2, 4)
    with pytest.raises(ValueError, match="one shape"):
        concat_volume(x, torch.zeros(1, 6, 2, 5), 2)
    with pytest.raises(ValueError, match="max_disp"):
        correlation_volume(x, x, 0)

"""The photometric error: the true disparity explains a pair, a wrong one does not."""

import torch

from stereodistill.distill.photometric import photometric_error


def test_the_true_disparity_has_the_smallest_error_and_out_of_view_pixels_are_masked():
    left = torch.rand(1, 3, 16, 48, generator=torch.Generator().manual_seed(0))
    right = torch.cat((left[..., 4:], left[..., -1:].expand(-1, -1, -1, 4)), -1)  # right(x) = left(x + 4)
    errors = {}
    for d in (0.0, 2.0, 4.0, 6.0):
        error, inside = photometric_error(left, right, torch.full((1, 16, 48), d))
        assert inside[..., : int(d)].logical_not().all() and inside[..., int(d) :].all()
        errors[d] = error[inside].mean().item()
    assert errors[4.0] < 1e-6 and min(errors[0.0], errors[2.0], errors[6.0]) > 0.1

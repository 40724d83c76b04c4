"""The photometric error and loss: the true disparity explains a pair, a wrong one does not."""

import torch
import torch.nn.functional as F

from stereodistill.distill.photometric import (
    photometric_error,
    reconstruction_loss,
    self_supervised_loss,
    smoothness_loss,
    ssim_distance,
    visible_in_right_view,
)


def shifted_pair(shift: int = 4, height: int = 16, width: int = 48, smooth: bool = False):
    """A left view and the right view of a fronto-parallel scene at ``shift`` px: right(x) = left(x + shift)."""
    left = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    if smooth:  # a texture whose bilinear samples vary smoothly, so the loss has a useful slope
        left = F.avg_pool2d(F.pad(left, (2, 2, 2, 2), mode="replicate"), 5, 1)
    right = torch.cat((left[..., shift:], left[..., -1:].expand(-1, -1, -1, shift)), -1)
    return left, right


def test_the_true_disparity_has_the_smallest_error_and_out_of_view_pixels_are_masked():
    left, right = shifted_pair()
    errors = {}
    for d in (0.0, 2.0, 4.0, 6.0):
        error, inside = photometric_error(left, right, torch.full((1, 16, 48), d))
        assert inside[..., : int(d)].logical_not().all() and inside[..., int(d) :].all()
        errors[d] = error[inside].mean().item()
    assert errors[4.0] < 1e-6 and min(errors[0.0], errors[2.0], errors[6.0]) > 0.1


def test_the_reconstruction_loss_is_least_at_the_true_disparity_and_its_gradient_points_there():
    left, right = shifted_pair(smooth=True)
    losses = {d: reconstruction_loss(left, right, torch.full((1, 16, 48), d), 0.85).item() for d in (3.0, 4.0, 5.0)}
    assert 10 * losses[4.0] < min(losses[3.0], losses[5.0])  # not 0: SSIM's windows reach the masked border
    for start, sign in ((3.5, -1), (4.5, 1)):  # below the truth the loss falls as d grows, above it rises
        disparity = torch.full((1, 16, 48), start, requires_grad=True)
        reconstruction_loss(left, right, disparity, 0.85).backward()
        assert sign * disparity.grad.sum().item() > 0


def test_ssim_distance_is_zero_for_equal_images_and_large_for_unrelated_ones():
    left, right = shifted_pair()
    assert ssim_distance(left, left).abs().max() < 1e-4
    assert ssim_distance(left, torch.rand_like(left)).mean() > 0.2
    assert ssim_distance(left, right).shape == (1, 16, 48)


def test_smoothness_spares_image_edges_and_does_not_reward_shrinking_the_disparity():
    image = torch.zeros(1, 3, 8, 16)
    assert smoothness_loss(torch.full((1, 8, 16), 5.0), image) == 0
    step = torch.full((1, 8, 16), 2.0)
    step[..., 8:] = 6.0
    flat_image_cost = smoothness_loss(step, image)
    image[..., 8:] = 1.0  # the depth edge now sits on an image edge
    assert smoothness_loss(step, image) < 0.5 * flat_image_cost
    assert torch.isclose(smoothness_loss(step / 4, image), smoothness_loss(step, image))


def test_self_supervised_loss_weights_the_predictions_from_the_end():
    left, right = shifted_pair()
    right_disp, wrong_disp = torch.full((1, 16, 48), 4.0), torch.full((1, 16, 48), 1.0)
    final_only = self_supervised_loss([right_disp], left, right, (0.5, 1.0))
    both = self_supervised_loss([wrong_disp, right_disp], left, right, (0.5, 1.0))
    wrong = self_supervised_loss([wrong_disp], left, right, (1.0,))
    assert 10 * final_only < wrong
    assert torch.isclose(both, 0.5 * wrong + final_only, atol=1e-6)


def test_a_pixel_is_hidden_when_a_nearer_surface_to_its_right_covers_its_match():
    disparity = torch.full((1, 1, 12), 2.0)
    disparity[..., 6:9] = 6.0  # a near bar: columns 6–8 land on 0–2 of the right view
    visible = visible_in_right_view(disparity)[0, 0].tolist()
    # background pixels 3, 4, 5 land on 1, 2, 3, behind the bar's left edge (0); 2 lands on the edge itself
    assert visible == [True] * 3 + [False] * 3 + [True] * 6
    assert visible_in_right_view(torch.full((2, 3, 8), 3.0)).all()  # a fronto-parallel plane hides nothing

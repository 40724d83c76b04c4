import math

import pytest
import torch
import torch.nn.functional as F

from stereodistill.distill.losses import LOSSES, masked_mean, multi_output_loss

G = torch.Generator().manual_seed(0)


def rand(*shape):
    return torch.randn(*shape, generator=G)


def test_cosine_hand_values():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)  # position 0: (1,0), 1: (0,1)
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).T.reshape(1, 2, 1, 2)  # both (1,0)
    assert LOSSES.get("cosine")(s, t).item() == pytest.approx(0.5)  # 0 and 1, averaged
    mask = torch.tensor([[[True, False]]])
    assert LOSSES.get("cosine")(s, t, mask).item() == pytest.approx(0.0)
    # The DSNet code's StereoSimilarity: 1 − cos along channels, mean.
    a, b = rand(2, 5, 3, 4), rand(2, 5, 3, 4)
    expected = (1 - F.cosine_similarity(b, a, dim=1)).mean()
    torch.testing.assert_close(LOSSES.get("cosine")(a, b), expected)


def test_mse_and_pkd_hand_values():
    s = torch.zeros(1, 2, 1, 1)
    t = torch.tensor([1.0, 3.0]).reshape(1, 2, 1, 1)
    assert LOSSES.get("mse")(s, t).item() == pytest.approx((1 + 9) / 2)
    a = rand(2, 3, 4, 5)
    # PKD ignores affine changes of the teacher's scale per channel.
    assert LOSSES.get("pkd")(a, 3 * a + 2).item() == pytest.approx(0.0, abs=1e-6)
    assert LOSSES.get("pkd")(a, -a).item() == pytest.approx(2.0, rel=1e-4)  # ((x − (−x))² = 4x², var 1) / 2


def test_cwd_is_zero_for_equal_maps_and_scales_with_tau_squared():
    a = rand(2, 3, 4, 5)
    assert LOSSES.get("cwd")(a, a).item() == pytest.approx(0.0, abs=1e-6)
    b = rand(2, 3, 4, 5)
    # By hand for τ = 1: per channel KL between spatial softmaxes.
    p_t = F.softmax(b.flatten(2), -1)
    expected = (p_t * (p_t.log() - F.log_softmax(a.flatten(2), -1))).sum(-1).mean()
    torch.testing.assert_close(LOSSES.get("cwd")(a, b, tau=1.0), expected)
    # Masked positions leave the softmax: changing them changes nothing.
    mask = torch.ones(2, 4, 5, dtype=torch.bool)
    mask[:, 0] = False
    b2 = b.clone()
    b2[:, :, 0] = 100.0
    torch.testing.assert_close(LOSSES.get("cwd")(a, b, mask), LOSSES.get("cwd")(a, b2, mask))


def test_kl_matches_definition_and_temperature_scaling():
    s, t = rand(2, 6, 3, 4), rand(2, 6, 3, 4)
    p = F.softmax(t / 2, 1)
    expected = (p * (p.log() - F.log_softmax(s / 2, 1))).sum(1).mean() * 4
    torch.testing.assert_close(LOSSES.get("kl")(s, t, tau=2.0), expected)
    assert LOSSES.get("kl")(t, t).item() == pytest.approx(0.0, abs=1e-6)
    # B×1×D×H×W volumes are accepted as distributions.
    torch.testing.assert_close(LOSSES.get("kl")(s.unsqueeze(1), t.unsqueeze(1)), LOSSES.get("kl")(s, t))


def test_soft_ce_equals_the_dsnet_value_divided_by_batch():
    s, t = rand(2, 6, 3, 4), rand(2, 6, 3, 4)
    n, c, h, w = s.shape
    sp = F.softmax(t.permute(0, 2, 3, 1).reshape(-1, c), 1)
    dsnet = (-sp * F.log_softmax(s.permute(0, 2, 3, 1).reshape(-1, c), 1)).sum() / h / w
    assert LOSSES.get("soft_ce")(s, t).item() == pytest.approx(dsnet.item() / n, rel=1e-5)
    # Cross-entropy ≥ entropy, with equality when student = teacher.
    entropy = -(F.softmax(t, 1) * F.log_softmax(t, 1)).sum(1).mean()
    assert LOSSES.get("soft_ce")(t, t).item() == pytest.approx(entropy.item(), rel=1e-5)


def test_dist_is_zero_for_identical_and_positive_otherwise():
    s, t = rand(2, 8, 3, 4), rand(2, 8, 3, 4)
    assert LOSSES.get("dist")(t, t).item() == pytest.approx(0.0, abs=1e-5)
    value = LOSSES.get("dist")(s, t).item()
    assert 0 < value < 4
    mask = torch.rand(2, 3, 4, generator=G) > 0.5
    assert math.isfinite(LOSSES.get("dist")(s, t, mask).item())


def test_disparity_losses_hand_values():
    pred = torch.tensor([[[1.0, 5.0, 2.0]]])
    gt = torch.tensor([[[1.5, 2.0, 2.0]]])
    valid = torch.tensor([[[True, True, False]]])
    assert LOSSES.get("l1")(pred, gt, valid).item() == pytest.approx((0.5 + 3.0) / 2)
    assert LOSSES.get("smooth_l1")(pred, gt, valid).item() == pytest.approx((0.5 * 0.25 + 2.5) / 2)
    assert LOSSES.get("log_l1")(pred, gt, valid).item() == pytest.approx((math.log(1.0) + math.log(3.5)) / 2)


@pytest.mark.parametrize("name", ["cosine", "mse", "pkd", "cwd", "kl", "soft_ce", "dist", "l1", "smooth_l1", "log_l1"])
def test_scale_does_not_depend_on_batch_or_resolution(name):
    shape = (2, 4, 3, 5) if name not in ("l1", "smooth_l1", "log_l1") else (2, 3, 5)
    s, t = rand(*shape), rand(*shape)
    loss = LOSSES.get(name)
    base = loss(s, t)
    doubled = loss(torch.cat([s, s]), torch.cat([t, t]))
    torch.testing.assert_close(doubled, base, rtol=1e-4, atol=1e-6)
    if name not in ("cwd", "dist"):  # spatial-softmax/relation losses depend on the spatial layout by design
        up = loss(
            s.repeat_interleave(2, -1).repeat_interleave(2, -2), t.repeat_interleave(2, -1).repeat_interleave(2, -2)
        )
        torch.testing.assert_close(up, base, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["cosine", "mse", "kl", "soft_ce", "l1"])
def test_gradient_reaches_the_student_only(name):
    shape = (1, 4, 2, 3) if name != "l1" else (1, 2, 3)
    s = rand(*shape).requires_grad_(True)
    t = rand(*shape).requires_grad_(True)
    LOSSES.get(name)(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_shape_mismatch_asks_for_an_adapter():
    with pytest.raises(ValueError, match="adapter"):
        LOSSES.get("cosine")(torch.zeros(1, 2, 3, 3), torch.zeros(1, 4, 3, 3))


def test_masked_mean_with_empty_mask_is_zero_not_nan():
    assert masked_mean(torch.ones(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool)).item() == 0.0


def test_multi_output_loss_weights_from_the_end():
    gt = torch.zeros(1, 2, 2)
    preds = [torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), 2.0), torch.full((1, 2, 2), 3.0)]
    value = multi_output_loss(preds, gt, None, (0.5, 0.7, 1.0), "l1")
    assert value.item() == pytest.approx(0.5 * 1 + 0.7 * 2 + 1.0 * 3)
    assert multi_output_loss(preds[-1:], gt, None, (0.5, 0.7, 1.0), "l1").item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="loss weights"):
        multi_output_loss(preds, gt, None, (1.0,), "l1")


def test_clamp_leaves_out_the_pixels_far_from_their_label():
    target = torch.zeros(1, 2, 2)
    pred = torch.tensor([[[1.0, 2.0], [10.0, 0.5]]], requires_grad=True)
    value = multi_output_loss([pred], target, None, (1.0,), "l1", clamp=3.0)
    assert value.item() == pytest.approx((1.0 + 2.0 + 0.5) / 3)
    value.backward()
    assert pred.grad[0, 1, 0] == 0 and pred.grad[0, 0, 0] > 0  # the 10 px outlier pulls nothing
    mask = torch.tensor([[[True, False], [True, True]]])
    assert multi_output_loss([pred], target, mask, (1.0,), "l1", clamp=3.0).item() == pytest.approx(0.75)


@pytest.mark.parametrize("name", ["pkd", "dist", "cosine", "mse", "kl", "cwd"])
def test_masked_out_positions_change_nothing_and_an_empty_mask_gives_zero(name):
    s, t = rand(2, 4, 4, 6), rand(2, 4, 4, 6)
    mask = torch.zeros(2, 4, 6, dtype=torch.bool)
    mask[:, :2] = True
    loss = LOSSES.get(name)
    changed = s.clone()
    changed[:, :, 2:] *= 100  # only where the mask keeps nothing
    torch.testing.assert_close(loss(changed, t, mask), loss(s, t, mask))
    empty = s.clone().requires_grad_(True)
    value = loss(empty, t, torch.zeros_like(mask))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(empty.grad).all()


def test_pkd_standardises_over_the_kept_positions():
    s, t = rand(1, 3, 4, 6), rand(1, 3, 4, 6)
    mask = torch.zeros(1, 4, 6, dtype=torch.bool)
    mask[:, :2] = True

    def standard(x):  # by hand, over the kept rows only
        kept = x[:, :, :2]
        return (kept - kept.mean((2, 3), keepdim=True)) / kept.var((2, 3), keepdim=True, unbiased=False).add(
            1e-6
        ).sqrt()

    expected = 0.5 * (standard(s) - standard(t)).square().mean()
    torch.testing.assert_close(LOSSES.get("pkd")(s, t, mask), expected)


@pytest.mark.parametrize("kept", [0, 1])
def test_dist_leaves_an_image_with_under_two_kept_pixels_out_of_its_relation_term(kept):
    s, t = rand(2, 4, 4, 6), rand(2, 4, 4, 6)
    mask = torch.ones(2, 4, 6, dtype=torch.bool)
    mask[1] = False  # the second image has nothing to correlate across pixels
    mask[1, 0, :kept] = True
    only_first = LOSSES.get("dist")(s[:1], t[:1], mask[:1], inter=0.0)
    torch.testing.assert_close(LOSSES.get("dist")(s, t, mask, inter=0.0), only_first)
    # Float weights: what counts is how many pixels are kept, not what their weights add up to.
    torch.testing.assert_close(LOSSES.get("dist")(s, t, mask * 3.0, inter=0.0), only_first)
    light = LOSSES.get("dist")(s, t, torch.full((2, 4, 6), 0.05), inter=0.0)
    torch.testing.assert_close(light, LOSSES.get("dist")(s, t, torch.ones(2, 4, 6, dtype=torch.bool), inter=0.0))


def test_mse_on_a_disparity_map_takes_its_mask():
    from stereodistill.distill.losses import LOSSES

    student, teacher = torch.zeros(2, 4, 6), torch.ones(2, 4, 6)
    mask = torch.zeros(2, 4, 6, dtype=torch.bool)
    mask[:, :2] = True
    teacher[:, 2:] = 5.0  # outside the mask
    assert float(LOSSES.get("mse")(student, teacher, mask)) == pytest.approx(1.0)
    assert float(LOSSES.get("mse")(student, teacher)) == pytest.approx(13.0)  # (1 + 25) / 2

import pytest
import torch

from stereodistill.distill.adapters import build_adapter
from stereodistill.distill.masks import full_resolution_mask, left_right_consistent, resize_mask
from stereodistill.distill.terms import TermConfig, build_terms
from stereodistill.errors import ConfigError

from ..models.tiny import TinyNet


def test_conv_adapter_maps_channels_of_features_and_volumes():
    a2 = build_adapter("conv", "feat.left.s4", (2, 8, 4, 6), (2, 16, 4, 6))
    s, t = a2(torch.randn(2, 8, 4, 6), torch.randn(2, 16, 4, 6))
    assert s.shape == t.shape
    a3 = build_adapter("conv", "volume.cost", (2, 8, 3, 4, 6), (2, 40, 3, 4, 6))
    assert a3(torch.randn(2, 8, 3, 4, 6), torch.randn(2, 40, 3, 4, 6))[0].shape == (2, 40, 3, 4, 6)
    with pytest.raises(ConfigError, match="channels only"):
        build_adapter("conv", "feat.left.s4", (2, 8, 4, 6), (2, 16, 8, 12))


def test_resize_adapter_resizes_features_and_the_disparity_axis_of_logits():
    r = build_adapter("resize", "feat.left.s2", (1, 4, 4, 6), (1, 4, 8, 12))
    assert r(torch.randn(1, 4, 4, 6), torch.randn(1, 4, 8, 12))[0].shape == (1, 4, 8, 12)
    r = build_adapter("resize", "logits.1", (1, 12, 4, 6), (1, 48, 16, 24))
    assert r(torch.randn(1, 12, 4, 6), torch.randn(1, 48, 16, 24))[0].shape == (1, 48, 16, 24)


def test_disparity_pool_sums_probabilities_of_the_teacher():
    pool = build_adapter("disparity_pool", "logits.1", (1, 2, 1, 1), (1, 4, 1, 1))
    teacher = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).reshape(1, 4, 1, 1)
    _, pooled = pool(torch.zeros(1, 2, 1, 1), teacher)
    torch.testing.assert_close(pooled.exp().flatten(), torch.tensor([0.3, 0.7]))
    vol = build_adapter("disparity_pool", "volume.cost", (1, 2, 2, 1, 1), (1, 2, 6, 1, 1))
    _, pooled = vol(torch.zeros(1, 2, 2, 1, 1), torch.ones(1, 2, 6, 1, 1))
    assert pooled.shape == (1, 2, 2, 1, 1) and pooled.flatten().tolist() == [3.0] * 4
    with pytest.raises(ConfigError, match="not a multiple"):
        build_adapter("disparity_pool", "logits.1", (1, 5, 1, 1), (1, 12, 1, 1))


def test_missing_adapter_and_unknown_adapter_are_errors():
    with pytest.raises(ConfigError, match="has no adapter; try adapter: conv"):
        build_adapter(None, "feat.left.s4", (1, 8, 4, 6), (1, 16, 4, 6))
    with pytest.raises(ConfigError, match="unknown adapter"):
        build_adapter("magic", "feat.left.s4", (1, 8, 4, 6), (1, 16, 4, 6))


def test_masks_and_majority_resize():
    gt = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    valid = torch.tensor([[[True, True, True, False]]])
    teacher = torch.tensor([[[1.5, 9.0, 3.0, 4.0]]])
    mask = full_resolution_mask("teacher_correct", valid=valid, gt=gt, teacher_disparity=teacher)
    assert mask.tolist() == [[[True, False, True, False]]]
    prob = torch.tensor([[0.9, 0.4], [0.1, 0.6]]).reshape(1, 2, 1, 2)
    assert full_resolution_mask("confidence", valid=valid, gt=gt, teacher_prob=prob).tolist() == [[[True, True]]]
    big = torch.zeros(1, 4, 4, dtype=torch.bool)
    big[:, :2, :2] = True
    big[:, 2, 2] = True
    assert resize_mask(big, (2, 2)).tolist() == [[[True, False], [False, False]]]
    assert resize_mask(torch.ones(1, 1, 2, dtype=torch.bool), (2, 4)).all()


def test_a_reduced_mask_votes_with_the_pixels_each_tap_cell_covers():
    # 34×66 at 1/4: 9×17 cells, the first row covering the 2 rows of padding above the image and rows 0–1.
    mask = torch.zeros(1, 34, 66, dtype=torch.bool)
    mask[:, :2] = True
    cells = resize_mask(mask, (9, 17))
    assert cells[0, 0].all() and not cells[0, 1:].any()
    assert resize_mask(torch.ones(1, 34, 66, dtype=torch.bool), (9, 17)).all()  # partial cells still count


def test_the_left_right_check_is_exact_in_bf16_too():
    # Even columns see 3 px, odd ones 5 px: each lands on a right column of the other parity, which
    # holds its disparity back. bf16 rounds x − d to an even number beyond 256, and would read the wrong one.
    columns = torch.arange(512).expand(1, 4, 512)
    disparity = torch.where(columns % 2 == 0, 3.0, 5.0)
    right = torch.where(columns % 2 == 1, 3.0, 5.0)
    kept = left_right_consistent(disparity.bfloat16(), right.bfloat16(), 1.0)
    assert kept.equal(left_right_consistent(disparity, right, 1.0)) and kept[..., 5:].all()


def test_terms_are_checked_against_both_models():
    student, teacher = TinyNet().train(), TinyNet().eval()
    bad_tap = TermConfig(name="f", student="volume.agg.0", teacher="volume.cost", loss="cosine")
    with pytest.raises(ConfigError, match=r"does not offer tap 'volume.agg.0'; it offers: disparity, feat.left.s4"):
        build_terms([bad_tap], student, teacher, 32, 64)
    with pytest.raises(ConfigError, match="params of loss cosine: unknown option 'tau'"):
        TermConfig(name="k", student="volume.cost", teacher="volume.cost", loss="cosine", params={"tau": 2})
    with pytest.raises(ConfigError, match=r"params of loss kl: unknown option 'temp'; valid options: tau"):
        TermConfig(name="k", student="logits.0", teacher="logits.0", loss="kl", params={"temp": 2})
    twice = [TermConfig(name="a", student="disparity", teacher="disparity", loss="l1")] * 2
    with pytest.raises(ConfigError, match="unique"):
        build_terms(twice, student, teacher, 32, 64)
    with pytest.raises(ConfigError, match="unknown mask"):
        TermConfig(name="m", student="disparity", teacher="disparity", loss="l1", mask="everything")


def test_built_terms_compute_masked_losses_with_gradients():
    student, teacher = TinyNet().train(), TinyNet().eval()
    configs = [
        TermConfig(name="feat", student="feat.left.s4", teacher="feat.left.s4", loss="cosine", mask="valid_gt"),
        TermConfig(name="disp", student="disparity", teacher="disparity", loss="smooth_l1", weight=0.1),
        TermConfig(
            name="vol",
            student="volume.cost",
            teacher="volume.cost",
            loss="kl",
            params={"tau": 2.0},
            weight={"type": "step", "value": 5, "rate": 10, "epochs": [1]},
        ),
    ]
    terms = build_terms(configs, student, teacher, 32, 64)
    left, right = torch.rand(2, 3, 32, 64), torch.rand(2, 3, 32, 64)
    s = student(left, right, taps=["feat.left.s4", "volume.cost"])
    with torch.no_grad():
        t = teacher(left, right, taps=["feat.left.s4", "volume.cost"])
    valid = torch.ones(2, 32, 64, dtype=torch.bool)
    total = terms["feat"](s.taps["feat.left.s4"], t.taps["feat.left.s4"], valid)
    total = total + terms["disp"].weight(0, 0) * terms["disp"](s.disparity, t.disparity)
    total = total + terms["vol"].weight(0, 1.5) * terms["vol"](s.taps["volume.cost"], t.taps["volume.cost"])
    assert terms["vol"].weight(0, 1.5) == pytest.approx(0.5)
    total.backward()
    assert student.features.weight.grad.abs().sum() > 0
    assert teacher.features.weight.grad is None


@pytest.mark.parametrize(
    ("term", "named"),
    [
        ({"loss": "kl", "params": {"tau": 0}}, "tau must be"),
        ({"loss": "kl", "params": {"tau": -2}}, "tau must be"),
        ({"loss": "cosine", "mask_threshold": 3}, "has no mask"),
        ({"loss": "cosine", "mask": "teacher_correct", "mask_threshold": -3}, "mask_threshold must be"),
        ({"loss": "kl", "mask": "confidence", "mask_threshold": 1.5}, "its mask_threshold must be at most 1"),
        ({"loss": "kl", "student": "disparity", "teacher": "disparity"}, "a disparity is one value a pixel"),
        ({"loss": "cosine", "student": "disparity", "teacher": "disparity", "mask": "teacher_correct"}, "one value"),
        ({"loss": "pkd", "student": "disparity", "teacher": "disparity"}, "use smooth_l1, l1, log_l1, mse"),
        ({"loss": "kl", "name": "lr"}, "term name 'lr' is taken by the run itself"),
        ({"loss": "kl", "name": "supervised"}, "term name 'supervised' is taken by the run itself"),
        ({"loss": "kl", "name": "_n"}, "term name '_n' is taken by the run itself"),
        ({"loss": "kl", "student": "feat.left.s4", "teacher": "feat.left.s4"}, "compares distributions over"),
        ({"loss": "soft_ce", "student": "logits.0", "teacher": "feat.left.s4"}, "got logits.0 and feat.left.s4"),
    ],
)
def test_term_settings_that_cannot_work_are_refused(term, named):
    taps = {"name": "t", "student": "logits.0", "teacher": "logits.0", **term}
    with pytest.raises(ConfigError, match=named):
        TermConfig(**taps)


@pytest.mark.parametrize(
    "term",
    [
        {"loss": "smooth_l1", "student": "disparity", "teacher": "disparity", "mask": "teacher_correct"},
        {"loss": "mse", "student": "disparity", "teacher": "disparity", "mask": "teacher_correct"},
        {"loss": "kl", "student": "logits.0", "teacher": "prob", "mask": "confidence", "mask_threshold": 1.0},
        {"loss": "dist", "student": "logits.0", "teacher": "prob"},
        {"loss": "cosine", "student": "feat.left.s4", "teacher": "feat.left.s4"},
    ],
)
def test_term_settings_that_fit_their_taps_are_taken(term):
    TermConfig(name="t", **term)


@pytest.mark.parametrize("spec", [{"type": "dwa", "temperature": 0}, {"type": "uncertainty", "clamp": -1}])
def test_weighting_options_outside_their_range_are_refused(spec):
    from stereodistill.distill.weights import check_weighting

    with pytest.raises(ConfigError, match="must be a number above 0"):
        check_weighting(spec)


def test_a_term_along_the_disparity_axis_needs_one_range_on_both_sides():
    from stereodistill.models import build_model

    student, teacher = build_model("lean-xs", max_disp=16), build_model("dsnet", max_disp=32)
    logits = TermConfig(name="kl", student="logits.0", teacher="logits.0", loss="kl")
    with pytest.raises(ConfigError, match="student's range is 16 px and the teacher's 32"):
        build_terms([logits], student.train(), teacher.eval(), 32, 64)
    features = TermConfig(name="f", student="feat.left.s4", teacher="feat.left.s4", loss="cosine", adapter="conv")
    assert "f" in build_terms([features], student.train(), teacher.eval(), 32, 64)  # features have no such axis


def test_a_teacher_disparity_below_the_students_range_is_refused_as_labels():
    from stereodistill.models import build_model

    student, teacher = build_model("lean-xs", max_disp=32), build_model("dsnet", max_disp=16)
    pseudo = TermConfig(name="pseudo", student="disparity", teacher="disparity", loss="smooth_l1")
    with pytest.raises(ConfigError, match=r"term 'pseudo': the teacher's disparity stops below 16 px, the student's"):
        build_terms([pseudo], student.train(), teacher.eval(), 32, 64)
    features = TermConfig(name="f", student="feat.left.s4", teacher="feat.left.s4", loss="cosine", adapter="conv")
    assert "f" in build_terms([features], student.train(), teacher.eval(), 32, 64)  # features know no range
    wider = build_model("dsnet", max_disp=48)
    assert "pseudo" in build_terms([pseudo], student.train(), wider.eval(), 32, 64)
    masked = TermConfig(**{**vars(pseudo), "mask": "teacher_correct"})  # "right" within 3 px of a truth it cannot
    with pytest.raises(ConfigError, match="its labels could not reach"):  # reach: labels pinned at its top would pass
        build_terms([masked], student.train(), teacher.eval(), 32, 64)


def test_a_distribution_loss_on_a_volume_of_groups_is_refused_when_built():
    from stereodistill.models import build_model

    student, teacher = build_model("lean-xs", max_disp=16), build_model("lean", max_disp=16)
    volume = TermConfig(name="v", student="volume.cost", teacher="volume.cost", loss="kl")
    with pytest.raises(ConfigError, match=r"term 'v': volume.cost is 8×4×8×16 \(its first axis holds groups"):
        build_terms([volume], student.train(), teacher.eval(), 32, 64)
    logits = TermConfig(name="kl", student="logits.0", teacher="logits.0", loss="kl")
    assert "kl" in build_terms([logits], student.train(), teacher.eval(), 32, 64)
    # group_pool brings the teacher's groups down to a one-group student's: a distribution again.
    one_group = build_model("lightstereo-s", max_disp=16)
    pooled = TermConfig(name="v", student="volume.cost", teacher="volume.cost", loss="kl", adapter="group_pool")
    assert "v" in build_terms([pooled], one_group.train(), teacher.eval(), 32, 64)
    # An adapter does not make the groups disparities: the check is on the shapes the loss compares.
    for adapter, smaller in (("conv", student), ("resize", build_model("lean", max_disp=16))):
        adapted = TermConfig(name="v", student="volume.cost", teacher="volume.cost", loss="kl", adapter=adapter)
        with pytest.raises(ConfigError, match=r"volume.cost after the adapter is 8×4×8×16 \(its first axis holds"):
            build_terms([adapted], smaller.train(), teacher.eval(), 32, 64)


@pytest.mark.parametrize("loss", ["kl", "soft_ce", "dist"])
def test_a_distribution_loss_takes_the_log_of_a_probability_tap_not_its_softmax(loss):
    from stereodistill.distill.losses import LOSSES
    from stereodistill.distill.terms import DistillTerm

    logits = torch.randn(2, 8, 4, 6) * 4
    prob = torch.softmax(logits, dim=1)
    as_teacher = DistillTerm(
        TermConfig(name="t", student="logits.0", teacher="prob", loss=loss), (2, 8, 4, 6), (2, 8, 4, 6)
    )
    as_student = DistillTerm(
        TermConfig(name="s", student="prob", teacher="logits.0", loss=loss), (2, 8, 4, 6), (2, 8, 4, 6)
    )
    expected = LOSSES.get(loss)(logits, logits)  # the same distribution on both sides
    torch.testing.assert_close(as_teacher(logits, prob), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(as_student(prob, logits), expected, atol=1e-5, rtol=0)
    pointwise = DistillTerm(
        TermConfig(name="m", student="prob", teacher="prob", loss="mse"), (2, 8, 4, 6), (2, 8, 4, 6)
    )
    assert pointwise(prob, prob * 0) == pytest.approx(float((prob**2).mean()))  # probabilities compared as they are


def test_teacher_max_disp_applies_to_an_original_release_only():
    from stereodistill.train.config import TeacherConfig

    with pytest.raises(ConfigError, match="'max_disp' applies to an 'original'"):
        TeacherConfig(checkpoint="t", max_disp=32)
    with pytest.raises(ConfigError, match=r"'arch' applies to an 'original' checkpoint \(ours records its own network"):
        TeacherConfig(checkpoint="t", arch="psmnet")  # it went unread: the checkpoint's network was used
    assert TeacherConfig(original="x.tar", arch="psmnet").max_disp == 192


def test_empty_bins_of_a_probability_tap_stay_empty_at_a_high_temperature():
    from stereodistill.distill.terms import _log_probability

    prob = torch.zeros(1, 192, 2, 2)
    prob[:, 100] = 0.7
    prob[:, 101] = 0.3  # a top-2 distribution: 190 empty bins
    tempered = torch.softmax(_log_probability(prob) / 4.0, dim=1)  # as kl at tau 4 sees the teacher
    assert float(tempered[:, :100].sum(1).max() + tempered[:, 102:].sum(1).max()) < 1e-6  # was 10 % at a 1e-12 floor

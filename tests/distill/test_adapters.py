"""Adapters against the real zoo: group_pool, adapter chains, suggestions in errors, the lean recipes."""

from functools import cache
from pathlib import Path

import pytest
import torch

from stereodistill.cli.train_cmd import load_run_config
from stereodistill.config import from_dict
from stereodistill.distill.adapters import (
    CONCATENATION,
    CORRELATION,
    AdapterChain,
    ChannelConv,
    GroupPool,
    build_adapter,
    format_chain,
    suggest_adapters,
)
from stereodistill.distill.masks import full_resolution_mask
from stereodistill.distill.terms import DISPARITY, DistillTerm, TermConfig, build_terms, cost_volume_kind
from stereodistill.errors import ConfigError
from stereodistill.models import build_model, list_models, model_class
from stereodistill.models.cost_volume import groupwise_correlation_volume

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
H, W, MAX_DISP = 64, 128, 32
# Every network of the zoo but the student; classical methods (sgbm) have no taps to distil from.
TEACHERS = [arch for arch in list_models() if arch != "lean" and model_class(arch).trainable]


@cache
def model(arch: str):
    return build_model(arch, max_disp=MAX_DISP).eval()


@cache
def shapes(arch: str) -> dict[str, tuple[int, ...]]:
    return model(arch).tap_shapes(H, W, batch=2, training=arch == "lean")


# ------------------------------------------------------------------------------------------ group_pool
@pytest.mark.parametrize("groups", [8, 1])
def test_group_pool_is_the_groupwise_correlation_with_fewer_groups(groups):
    g = torch.Generator().manual_seed(0)
    left, right = torch.randn(2, 40, 3, 10, generator=g), torch.randn(2, 40, 3, 10, generator=g)
    teacher = groupwise_correlation_volume(left, right, 6, 40)
    expected = groupwise_correlation_volume(left, right, 6, groups)
    pool = build_adapter("group_pool", "volume.cost", tuple(expected.shape), tuple(teacher.shape))
    assert isinstance(pool, GroupPool) and not list(pool.parameters())
    student = torch.randn_like(expected)
    s, t = pool(student, teacher)
    assert s is student
    torch.testing.assert_close(t, expected)


def test_group_pool_needs_a_multiple_and_correlation_volumes():
    with pytest.raises(ConfigError, match=r"40 groups, not a multiple of the student's 16.*divides 40"):
        build_adapter("group_pool", "volume.cost", (1, 16, 2, 3, 4), (1, 40, 2, 3, 4))
    with pytest.raises(ConfigError, match="correlation volume; try adapter: conv"):
        build_adapter("group_pool", "feat.left.s4", (1, 8, 3, 4), (1, 40, 3, 4))
    with pytest.raises(ConfigError, match=r"only volume\.cost taps"):
        build_adapter("group_pool", "volume.agg.0", (1, 8, 2, 3, 4), (1, 32, 2, 3, 4))
    with pytest.raises(ConfigError, match="concatenation volume"):
        build_adapter("group_pool", "volume.cost", (1, 8, 2, 3, 4), (1, 64, 2, 3, 4), teacher_volume=CONCATENATION)


# ---------------------------------------------------------------------------------------------- chains
def test_an_adapter_list_applies_in_order_and_a_single_name_stays_one_module():
    single = build_adapter("conv", "feat.left.s4", (2, 8, 4, 6), (2, 16, 4, 6))
    assert isinstance(single, ChannelConv) and set(single.state_dict()) == {"conv.weight"}
    assert isinstance(build_adapter(["conv"], "feat.left.s4", (2, 8, 4, 6), (2, 16, 4, 6)), ChannelConv)
    chain = build_adapter(["resize", "conv"], "feat.left.s4", (2, 8, 4, 6), (2, 16, 8, 12))
    assert isinstance(chain, AdapterChain) and set(chain.state_dict()) == {"steps.1.conv.weight"}
    s, t = chain(torch.randn(2, 8, 4, 6), torch.randn(2, 16, 8, 12))
    assert s.shape == t.shape == (2, 16, 8, 12)
    volume = build_adapter(["group_pool", "resize"], "volume.cost", (2, 8, 4, 4, 8), (2, 40, 2, 2, 4))
    s, t = volume(torch.randn(2, 8, 4, 4, 8), torch.randn(2, 40, 2, 2, 4))
    assert s.shape == t.shape == (2, 8, 2, 2, 4)
    with pytest.raises(ConfigError, match=r"channels only.*try adapter: \[resize, conv\]"):
        build_adapter(["conv", "resize"], "feat.left.s4", (2, 8, 4, 6), (2, 16, 8, 12))
    with pytest.raises(ConfigError, match="unknown adapter 'magic'"):
        build_adapter(["resize", "magic"], "feat.left.s4", (2, 8, 4, 6), (2, 16, 8, 12))


def test_term_configs_take_one_adapter_or_a_list():
    one = from_dict(TermConfig, {"name": "a", "student": "x", "teacher": "y", "loss": "l1", "adapter": "conv"})
    chain = {"name": "a", "student": "x", "teacher": "y", "loss": "l1", "adapter": ["group_pool", "resize"]}
    assert one.adapter == "conv" and from_dict(TermConfig, chain).adapter == ["group_pool", "resize"]


# ------------------------------------------------------------------------------ checks and suggestions
def test_an_adapter_that_leaves_the_shapes_apart_is_an_error_with_the_fitting_one():
    with pytest.raises(ConfigError, match=r"after 'adapter: resize'.*try adapter: \[resize, conv\]"):
        build_adapter("resize", "feat.left.s4", (2, 48, 16, 32), (2, 32, 24, 48), teacher_tap="feat.left.s3")
    with pytest.raises(ConfigError, match=r"after 'adapter: resize'.*try adapter: conv"):
        build_adapter("resize", "feat.left.s4", (2, 48, 16, 32), (2, 320, 16, 32))
    with pytest.raises(ConfigError, match=r"channels only.*try adapter: \[group_pool, resize\]"):
        build_adapter("conv", "volume.cost", (2, 8, 8, 16, 32), (2, 40, 4, 8, 16))
    with pytest.raises(ConfigError, match=r"after 'adapter: group_pool'.*try adapter: \[group_pool, resize\]"):
        build_adapter("group_pool", "volume.cost", (2, 8, 8, 16, 32), (2, 40, 4, 8, 16))
    with pytest.raises(ConfigError, match="needs a feature map or volume; try adapter: disparity_pool"):
        build_adapter("conv", "logits.0", (2, 4, 16, 32), (2, 8, 16, 32))
    with pytest.raises(ConfigError, match="has no adapter; try adapter: disparity_pool or adapter: resize"):
        build_adapter(None, "logits.0", (2, 4, 16, 32), (2, 8, 16, 32), teacher_tap="logits.2")
    with pytest.raises(ConfigError, match=r"try adapter: \[disparity_pool, resize\] or adapter: resize"):
        build_adapter(None, "logits.0", (2, 4, 16, 32), (2, 8, 8, 16))
    with pytest.raises(ConfigError, match="no adapter compares a features tap with a volume tap"):
        build_adapter("conv", "feat.left.s4", (2, 8, 16, 32), (2, 8, 8, 16, 32), teacher_tap="volume.agg.0")


def test_suggestions_are_computed_from_the_shapes():
    def chains(*args, **kwargs):
        return suggest_adapters(*args, **kwargs).chains

    assert chains("feat.left.s4", (2, 48, 16, 32), (2, 320, 16, 32)) == (("conv",),)
    assert chains("feat.left.s2", (2, 16, 32, 64), (2, 16, 64, 128)) == (("resize",),)
    assert chains("volume.cost", (2, 8, 8, 16, 32), (2, 40, 8, 16, 32)) == (("group_pool",),)
    assert chains("volume.cost", (2, 16, 8, 16, 32), (2, 40, 8, 16, 32)) == (("conv",),)
    assert chains("volume.agg.0", (2, 8, 8, 16, 32), (2, 40, 8, 16, 32)) == (("conv",),)
    assert chains("volume.agg.0", (2, 8, 8, 16, 32), (2, 32, 4, 8, 16)) == (("resize", "conv"),)
    assert chains("logits.0", (2, 8, 16, 32), (2, 4, 8, 16)) == (("resize",),)
    assert chains("prob", (2, 16, 64, 128), (2, 32, 64, 128)) == (("disparity_pool",), ("resize",))
    mixed = suggest_adapters(
        "volume.cost", (2, 8, 8, 16, 32), (2, 64, 8, 16, 32), student_volume=CORRELATION, teacher_volume=CONCATENATION
    )
    assert not mixed.chains and "pair logits.K, prob or disparity instead" in mixed.text()


# ---------------------------------------------------------------------------------- the zoo against lean
def teacher_feature(arch: str, side: str, scale: str) -> str | None:
    offered = shapes(arch)
    if f"feat.{side}.{scale}" in offered:
        return f"feat.{side}.{scale}"
    if scale == "s4" and f"feat.{side}.s3" in offered:  # LEAStereo's features are at 1/3
        return f"feat.{side}.s3"
    return None


def sensible_pairs(arch: str) -> list[tuple[str, str, str, dict]]:
    """(student tap, teacher tap, loss, params) of every term that makes sense from ``arch`` to lean."""
    offered = shapes(arch)
    pairs = []
    for side in ("left", "right"):
        for scale in ("s2", "s4"):
            tap = teacher_feature(arch, side, scale)
            if tap is not None:
                pairs.append((f"feat.{side}.{scale}", tap, "cosine", {}))
    if cost_volume_kind(model(arch), "volume.cost") != CONCATENATION:
        pairs.append(("volume.cost", "volume.cost", "cosine", {}))
    last = max((t for t in offered if t.startswith("logits.")), key=lambda t: int(t.split(".")[1]))
    pairs.append(("logits.0", last, "kl", {"tau": 2.0}))
    if "prob" in offered:
        pairs.append(("prob", "prob", "mse", {}))
    pairs.append((DISPARITY, DISPARITY, "smooth_l1", {}))
    return pairs


def test_exactly_the_concatenation_teachers_are_told_apart():
    for arch in [*TEACHERS, "lean"]:
        kind = cost_volume_kind(model(arch), "volume.cost")
        assert (kind == CONCATENATION) == (arch in {"psmnet", "leastereo"}), arch


@pytest.mark.parametrize("teacher", TEACHERS)
def test_every_teacher_distils_into_lean_through_the_suggested_adapters(teacher):
    student_shapes, teacher_shapes = shapes("lean"), shapes(teacher)
    configs = []
    for s_tap, t_tap, loss, params in sensible_pairs(teacher):
        s_shape = (2, H, W) if s_tap == DISPARITY else student_shapes[s_tap]
        t_shape = (2, H, W) if t_tap == DISPARITY else teacher_shapes[t_tap]
        kinds = {
            "student_volume": cost_volume_kind(model("lean"), s_tap),
            "teacher_volume": cost_volume_kind(model(teacher), t_tap),
        }
        suggestion = suggest_adapters(s_tap, s_shape, t_shape, teacher_tap=t_tap, **kinds)
        adapter = list(suggestion.chains[0]) if suggestion.chains else None
        name = f"{s_tap}-{t_tap}".replace(".", "_")
        if adapter is None:
            assert s_shape == t_shape, suggestion.text()
        else:  # an unadapted term is an error that names the term, both shapes and this adapter
            with pytest.raises(ConfigError) as info:  # what build_terms builds, without its dry runs
                DistillTerm(TermConfig(name=name, student=s_tap, teacher=t_tap, loss=loss), s_shape, t_shape, **kinds)
            message = str(info.value)
            assert f"term {name!r}" in message and str(s_shape) in message and str(t_shape) in message
            assert f"try adapter: {format_chain(adapter)}" in message
        mask = "teacher_correct" if s_tap == DISPARITY else None
        configs.append(
            TermConfig(
                name=name,
                student=s_tap,
                teacher=t_tap,
                loss=loss,
                params=params,
                adapter=adapter,
                mask=mask,
            )
        )
    terms = build_terms(configs, model("lean"), model(teacher), H, W)
    g = torch.Generator().manual_seed(0)
    gt = 16 * torch.rand(2, H, W, generator=g)
    for config in configs:
        s_shape = (2, H, W) if config.student == DISPARITY else student_shapes[config.student]
        t_shape = (2, H, W) if config.teacher == DISPARITY else teacher_shapes[config.teacher]
        student = torch.randn(s_shape, generator=g, requires_grad=True)
        teacher_tap = torch.randn(t_shape, generator=g)
        mask = None
        if config.mask:
            mask = full_resolution_mask(config.mask, valid=gt > 0, gt=gt, teacher_disparity=gt + teacher_tap.tanh())
        loss = terms[config.name](student, teacher_tap, mask)
        assert loss.dim() == 0 and torch.isfinite(loss), config.name
        loss.backward()
        assert student.grad is not None and torch.isfinite(student.grad).all()


def test_unpairable_volumes_say_so_and_point_to_the_distributions():
    unpairable = r"term 'vol'.*concatenation volume.*pair logits\.K, prob or disparity instead"
    term = TermConfig(name="vol", student="volume.cost", teacher="volume.cost", loss="cosine")
    with pytest.raises(ConfigError, match=unpairable):
        build_terms([term], model("lean"), model("psmnet"), H, W)
    for teacher in ("psmnet", "leastereo"):
        kinds = {
            "student_volume": cost_volume_kind(model("lean"), "volume.cost"),
            "teacher_volume": cost_volume_kind(model(teacher), "volume.cost"),
        }
        for adapter in (None, "conv", "group_pool", ["group_pool", "resize"]):
            term = TermConfig(name="vol", student="volume.cost", teacher="volume.cost", loss="cosine", adapter=adapter)
            with pytest.raises(ConfigError, match=unpairable):
                DistillTerm(term, shapes("lean")["volume.cost"], shapes(teacher)["volume.cost"], **kinds)


def test_cfnet_logits_at_one_eighth_pair_with_lean_logits_through_resize():
    term = TermConfig(name="kl", student="logits.0", teacher="logits.2", loss="kl", adapter="resize")
    built = build_terms([term], model("lean"), model("cfnet"), H, W)["kl"]
    student = torch.randn(shapes("lean")["logits.0"])
    s, t = built.adapter(student, torch.randn(shapes("cfnet")["logits.2"]))
    assert s.shape == t.shape == (2, MAX_DISP // 8, H // 8, W // 8)


# ------------------------------------------------------------------------------------------ the recipes
RECIPES = {"distill_lean_from_dsnet_teacher.yaml": "dsnet-teacher", "distill_lean_from_psmnet.yaml": "psmnet"}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_lean_recipes_validate_and_their_terms_run_on_a_random_teacher(name):
    config = load_run_config(str(CONFIGS / name), ["model.max_disp=16", "data.train.max_disp=16", "data.crop=[32, 64]"])
    assert config.model.arch == "lean" and config.teacher is not None and config.distill.terms
    assert load_run_config(str(CONFIGS / name), []).model.max_disp == 192
    torch.manual_seed(0)
    student = build_model(config.model.arch, max_disp=config.model.max_disp, **config.model.options).train()
    teacher = build_model(RECIPES[name], max_disp=config.model.max_disp).eval()
    height, width = config.data.crop
    terms = build_terms(config.distill.terms, student, teacher, height, width)
    left, right = torch.rand(2, 3, height, width), torch.rand(2, 3, height, width)
    s = student(left, right, taps=[t.student for t in config.distill.terms if t.student != DISPARITY])
    with torch.no_grad():
        t = teacher(left, right, taps=[t.teacher for t in config.distill.terms if t.teacher != DISPARITY])
    gt = t.disparity + torch.randn_like(t.disparity)
    total = 0.0
    for cfg in config.distill.terms:
        mask = None
        if cfg.mask:
            mask = full_resolution_mask(cfg.mask, valid=gt > 0, gt=gt, teacher_disparity=t.disparity)
        s_tap = s.disparity if cfg.student == DISPARITY else s.taps[cfg.student]
        t_tap = t.disparity if cfg.teacher == DISPARITY else t.taps[cfg.teacher]
        loss = terms[cfg.name](s_tap, t_tap, mask)
        assert torch.isfinite(loss), cfg.name
        total = total + terms[cfg.name].weight(0, 0.0) * loss
    total.backward()
    assert any(p.grad is not None for p in terms.parameters())


def test_taps_of_one_kind_and_two_layouts_are_named_by_their_layouts():
    from stereodistill.distill.adapters import suggest_adapters

    why = suggest_adapters("logits.0", (2, 8, 4, 6), (2, 1, 8, 4, 6), teacher_tap="volume.attention").text()
    assert why == "no adapter compares a 4-D distribution tap with a 5-D one: pair taps of one layout"

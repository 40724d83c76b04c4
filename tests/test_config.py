from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from stereodistill.config import apply_overrides, from_dict, load_yaml, to_dict
from stereodistill.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class Inner:
    lr: float = 1e-3
    name: Literal["adam", "adamw"] = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Outer:
    arch: str
    steps: int = 10
    optim: Inner = field(default_factory=Inner)
    weight: float | dict[str, Any] = 1.0
    tags: list[str] = field(default_factory=list)
    init: str | None = None


def test_valid_config_is_typed_and_round_trips():
    cfg = from_dict(Outer, {"arch": "dsnet", "steps": 5, "optim": {"lr": 1, "betas": [0.8, 0.9]}, "tags": ["a"]})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (0.8, 0.9)
    assert from_dict(Outer, to_dict(cfg)) == cfg
    assert from_dict(Outer, {"arch": "x", "weight": {"type": "step"}}).weight == {"type": "step"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"arch": "x", "stpes": 3}, r"unknown key 'stpes'; did you mean 'steps'\?"),
        ({"arch": "x", "optim": {"lrr": 3}}, r"unknown key 'optim.lrr'; did you mean 'lr'\?"),
        ({"arch": "x", "steps": "ten"}, r"steps: expected an integer, got 'ten'"),
        ({"arch": "x", "steps": True}, "steps: expected an integer"),
        ({"arch": "x", "optim": {"name": "adamx"}}, r"optim.name: expected one of 'adam', 'adamw'.*did you mean"),
        ({"arch": "x", "optim": {"betas": [1]}}, "optim.betas: expected 2 values"),
        ({"arch": "x", "tags": "a"}, "tags: expected list of str"),
        ({"arch": "x", "weight": "heavy"}, "weight: expected float or mapping"),
        ({}, "missing required key"),
    ],
)
def test_errors_name_the_key_and_the_expectation(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_overrides_parse_yaml_and_create_nested_keys():
    data = apply_overrides({"arch": "x", "optim": {"lr": 1}}, ["optim.lr=2e-4", "steps=3", "tags=[a, b]", "new.k=1"])
    assert from_dict(Outer, {"arch": "x", "optim": data["optim"]}).optim.lr == 2e-4  # YAML 1.1 text "2e-4"
    assert data["steps"] == 3 and data["tags"] == ["a", "b"] and data["new"] == {"k": 1}
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        apply_overrides({}, ["steps"])
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides({"arch": "x"}, ["arch.sub=1"])


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_yaml(tmp_path / "list.yaml")


def test_a_key_given_twice_is_refused_and_a_merge_may_give_its_keys_again(tmp_path):
    (tmp_path / "twice.yaml").write_text("steps: 5\ndata:\n  batch_size: 2\n  crop: [8, 8]\n  batch_size: 4\n")
    with pytest.raises(ConfigError) as info:  # YAML itself keeps the last, silently
        load_yaml(tmp_path / "twice.yaml")
    problem = "key 'batch_size' given twice (first at line 3) at line 5, column 3"
    assert str(info.value) == f"{tmp_path / 'twice.yaml'}: not valid YAML ({problem})"
    with pytest.raises(ConfigError, match=r"value is not valid YAML \(key 'a' given twice\)$"):  # one line
        apply_overrides({}, ["model.options={a: 1, a: 2}"])
    (tmp_path / "merge.yaml").write_text("base: &b {lr: 1, steps: 2}\nrun:\n  <<: *b\n  lr: 3\n")
    assert load_yaml(tmp_path / "merge.yaml")["run"] == {"lr": 3, "steps": 2}


def test_overrides_reach_a_distillation_term_by_its_name():
    data = {"distill": {"terms": [{"name": "kl", "weight": 1.0}, {"name": "feat", "weight": 1.0}]}}
    out = apply_overrides(data, ["distill.terms.feat.weight=0.5", "distill.terms.kl.params.tau=2"])
    assert out["distill"]["terms"] == [
        {"name": "kl", "weight": 1.0, "params": {"tau": 2}},
        {"name": "feat", "weight": 0.5},
    ]
    assert data["distill"]["terms"][1]["weight"] == 1.0  # a copy
    with pytest.raises(ConfigError, match=r"no term named 'vol' \(terms: kl, feat\)"):
        apply_overrides(data, ["distill.terms.vol.weight=2"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.options.widht=3", r"options of lean: unknown option 'widht' \(did you mean 'width'\?\)"),
        ("model.options.width=wide", r"options of lean.width: expected a number, got 'wide'"),
        (
            "model.options.fin=4",
            r"options of lean: unknown option 'fin' \(did you mean 'fine'\?\); "
            r"valid .*, fine, fine_block, fine_polish, fine_extremes$",
        ),
        ("model.options.fine=20", r"lean: option fine must be an integer 0–16"),
        ("distill.weighting={type: dwa, temprature: 2}", r"unknown option 'temprature' \(did you mean 'temperature'"),
        ("distill.weighting={type: fixed, clamp: 2}", "the fixed weighting takes no options"),
        ("data.train.options={low_textur_prob: 0.1}", r"options of synthetic: unknown option 'low_textur_prob'"),
        ("distill.terms.kl.params.taux=2", r"params of loss kl: unknown option 'taux' \(did you mean 'tau'\?\)"),
        ("distill.terms.kl.weight={type: linear, end: 1, step: 10}", r"'step' of a linear schedule; did you mean"),
        ("supervised.weight={type: step, value: 1}", "epochs"),
        ("teacher={original: x.pth, arch: psmnet, options: {align_corner: true}}", r"did you mean 'align_corners'"),
    ],
)
def test_free_form_options_are_checked_before_any_work(override, message):
    from stereodistill.train.config import RunConfig

    base = load_yaml(CONFIGS / "bench" / "proxy_lean_base.yaml")
    data = apply_overrides(base, ["teacher.checkpoint=t", override])
    with pytest.raises(ConfigError, match=message):
        from_dict(RunConfig, data)


def test_a_release_teacher_takes_its_networks_options():
    from stereodistill.train.config import TeacherConfig

    teacher = from_dict(TeacherConfig, {"original": "x.pth", "arch": "psmnet", "options": {"align_corners": True}})
    assert teacher.options == {"align_corners": True}
    with pytest.raises(ConfigError, match="apply to an 'original' checkpoint"):
        from_dict(TeacherConfig, {"checkpoint": "runs/t/model", "options": {"align_corners": True}})


def test_a_name_yaml_read_as_a_number_says_how_to_keep_it_text():
    from stereodistill.cli.train_cmd import load_run_config

    with pytest.raises(
        ConfigError,
        match=r"^name: expected a string, got 123 \(YAML read it as a number or a flag: quote it to keep it text\)$",
    ):
        load_run_config(str(CONFIGS / "teacher.yaml"), ["name=123"])
    assert load_run_config(str(CONFIGS / "teacher.yaml"), ["name='123'"]).name == "123"

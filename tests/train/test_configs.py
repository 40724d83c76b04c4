"""The shipped recipes validate and start on the embedded synthetic data with small overrides."""

from pathlib import Path

import pytest

from stereodistill.checkpoint import save_model
from stereodistill.cli.main import main
from stereodistill.cli.train_cmd import load_run_config
from stereodistill.config import from_dict, to_dict
from stereodistill.errors import ConfigError
from stereodistill.models import build_model
from stereodistill.train.config import RunConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = [
    "model.max_disp=16",
    "data.train.pairs=4",
    "data.train.size=[32, 64]",
    "data.train.max_disp=16",
    "data.val.pairs=1",
    "data.val.size=[32, 64]",
    "data.val.max_disp=16",
    "data.crop=[32, 64]",
    "data.batch_size=2",
    "steps=2",
]


@pytest.mark.parametrize("name", ["teacher.yaml", "dsnet_paper.yaml", "dsnet_plus.yaml"])
def test_shipped_configs_validate(name):
    config = load_run_config(str(CONFIGS / name), [])
    assert config.total_steps > 0


@pytest.mark.parametrize("name", ["dsnet_paper.yaml", "dsnet_plus.yaml"])
def test_recipes_start_with_steps_2(tmp_path, name, capsys):
    save_model(tmp_path / "teacher", build_model("dsnet-teacher", max_disp=16))
    overrides = [*SMALL, f"teacher.checkpoint={tmp_path / 'teacher'}", f"output={tmp_path / 'run'}"]
    assert main(["distill", str(CONFIGS / name), *overrides]) == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert "trained dsnet for 2 steps in" in capsys.readouterr().out


def test_fraction_stages_scale_with_steps():
    config = load_run_config(str(CONFIGS / "dsnet_plus.yaml"), ["steps=10"])
    assert config.stage_ends() == [2, 8, 10]
    with pytest.raises(ConfigError, match="add up to 1"):
        load_run_config(str(CONFIGS / "dsnet_plus.yaml"), ["stages=[{name: a, fraction: 0.5}]"])


def test_stages_in_absolute_steps_set_the_runs_length_and_steps_may_not_contradict_them():
    stages = [{"name": "a", "steps": 2}, {"name": "b", "steps": 1}]
    run = {"model": {"arch": "dsnet"}, "data": {"train": {"dataset": "synthetic"}}, "stages": stages}
    config = from_dict(RunConfig, run)  # no steps given
    assert config.steps == config.total_steps == 3 and to_dict(config)["steps"] == 3  # as config.yaml says
    stages = "stages=[{name: a, steps: 2}, {name: b, steps: 1}]"
    assert load_run_config(str(CONFIGS / "dsnet_plus.yaml"), [stages, "steps=3"]).steps == 3
    with pytest.raises(
        ConfigError,
        match=r"steps is 10, but the stages, given in absolute steps, add up to 3: the run would train their sum",
    ):
        load_run_config(str(CONFIGS / "dsnet_plus.yaml"), [stages, "steps=10"])


def test_a_stage_without_any_loss_is_refused_when_the_config_loads():
    stages = "stages=[{name: a, fraction: 0.5}, {name: b, fraction: 0.5, supervised: false, terms: []}]"
    with pytest.raises(ConfigError, match=r"stage 'b' has neither supervision nor active terms: it has no loss"):
        load_run_config(str(CONFIGS / "dsnet_plus.yaml"), [stages])
    photometric = "photometric.weight=1.0"  # the photometric loss needs no ground truth and no term
    assert load_run_config(str(CONFIGS / "dsnet_plus.yaml"), [stages, photometric]).stages[1].name == "b"


def test_unknown_key_in_a_recipe_names_the_nearest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'optim.learning_rate'.*"):
        load_run_config(str(CONFIGS / "dsnet_paper.yaml"), ["optim.learning_rate=1"])


@pytest.mark.parametrize("value", ["0", "-3", ".nan", ".inf"])
def test_a_dataset_range_that_leaves_no_valid_pixel_is_refused_when_the_config_loads(value):
    with pytest.raises(ConfigError, match=r"^data.train: max_disp must be a number of pixels above 0"):
        load_run_config(str(CONFIGS / "teacher.yaml"), [f"data.train.max_disp={value}"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.train.root=/data/SceneFlow", r"^data.train: root does not apply to synthetic \(its pairs are generated"),
        (
            "data.train={dataset: sceneflow, root: /data/SceneFlow, pairs: 1000, size: [256, 512]}",
            r"^data.train: pairs, size apply to synthetic data only, not to sceneflow",
        ),
        ("data.train={dataset: middlebury-motorcycle, seed: 3}", r"^data.train: seed applies to synthetic data only"),
        (
            "data.train.dataset=synthetc",
            r"^data.train: unknown dataset 'synthetc' \(did you mean 'synthetic'\?\); valid",
        ),
    ],
)
def test_a_dataset_key_the_dataset_does_not_read_is_refused_not_ignored(override, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(str(CONFIGS / "teacher.yaml"), [override])
    sceneflow = "data.train={dataset: sceneflow, root: /data/SceneFlow, size: [96, 192]}"  # the defaults, written out
    assert load_run_config(str(CONFIGS / "teacher.yaml"), [sceneflow]).data.train.dataset == "sceneflow"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["steps=3", "steps=4"], r"^override steps is given twice \('steps=3', 'steps=4'\): give it once"),
        (["optim.milestones=[1]"], r"optim.milestones are the step schedule's; the onecycle schedule would not read"),
        (["data.val=null", "val_samples=3"], r"val_samples is given but the run has no data.val"),
    ],
)
def test_settings_nothing_would_read_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(str(CONFIGS / "teacher.yaml"), overrides)


def test_a_teacher_section_error_is_prefixed_once():
    with pytest.raises(ConfigError, match=r"^teacher: give exactly one of 'checkpoint' or 'original'$"):
        load_run_config(str(CONFIGS / "dsnet_plus.yaml"), ["teacher={}"])
    with pytest.raises(ConfigError, match=r"the disparity axis \(logits.K, prob, volume.\*\), got feat.left.s4"):
        load_run_config(str(CONFIGS / "dsnet_plus.yaml"), ["distill.terms.kl_2.student=feat.left.s4"])


def test_training_ground_truth_beyond_the_networks_range_is_refused():
    with pytest.raises(ConfigError, match=r"data.train.max_disp is 192 px, beyond model.max_disp \(32\): ground"):
        load_run_config(str(CONFIGS / "teacher.yaml"), ["model.max_disp=32"])

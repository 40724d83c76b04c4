"""Mixed training: labelled batches and unlabeled pairs at a set ratio, the unlabeled ones learnt from
the teacher alone through masks that need no ground truth."""

import csv

import pytest
import torch
import yaml

from stereodistill.checkpoint import save_model
from stereodistill.cli.main import main
from stereodistill.config import from_dict
from stereodistill.errors import ConfigError
from stereodistill.models import build_model
from stereodistill.train.config import DataConfig, RunConfig

from .test_resume import assert_same_run
from .test_trainer import TINY

UNLABELED = {"dataset": "synthetic", "pairs": 6, "size": [32, 64], "max_disp": 16, "seed": 7}
TERMS = [
    {"name": "kl", "student": "logits.0", "teacher": "logits.0", "loss": "kl", "mask": "confidence"},
    {"name": "pseudo", "student": "disparity", "teacher": "disparity", "loss": "smooth_l1", "mask": "lr_consistent"},
]


def mixed(tmp_path, terms=TERMS, ratio=0.5, steps=6):
    save_model(tmp_path / "teacher", build_model("dsnet", max_disp=16))
    return {
        **TINY,
        "steps": steps,
        "data": {**TINY["data"], "unlabeled": UNLABELED, "unlabeled_ratio": ratio},
        "teacher": {"checkpoint": str(tmp_path / "teacher")},
        "distill": {"terms": terms},
        "checkpoint_every": 1,
    }


def test_the_ratio_spreads_unlabeled_steps_evenly():
    data = from_dict(DataConfig, {"train": TINY["data"]["train"], "unlabeled": UNLABELED, "unlabeled_ratio": 0.25})
    assert [data.is_unlabeled_step(step) for step in range(8)] == [False, False, False, True] * 2
    assert data.unlabeled_steps(8) == 2
    assert from_dict(DataConfig, {"train": TINY["data"]["train"]}).unlabeled_steps(8) == 0
    with pytest.raises(ConfigError, match="unlabeled_ratio"):
        from_dict(DataConfig, {"train": TINY["data"]["train"], "unlabeled_ratio": 0})


def test_ground_truth_masks_and_missing_terms_are_errors_before_any_work(tmp_path):
    bad = [{**TERMS[1], "mask": "teacher_correct"}]
    with pytest.raises(ConfigError, match="'pseudo': mask teacher_correct reads the ground truth"):
        from_dict(RunConfig, mixed(tmp_path, terms=bad))
    with pytest.raises(ConfigError, match="learn only from distillation terms"):
        from_dict(RunConfig, {**mixed(tmp_path), "distill": {"terms": []}})


def test_unlabeled_steps_have_no_supervised_loss_and_resume_exactly(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(mixed(tmp_path)))
    assert main(["distill", str(path), f"output={tmp_path / 'full'}"]) == 0
    with open(tmp_path / "full" / "scalars.csv", newline="") as f:
        supervised = {int(row["step"]) for row in csv.DictReader(f) if row["name"] == "supervised"}
    assert supervised == {1, 3, 5}  # steps 0, 2, 4 (logged after the step) are labelled; 1, 3, 5 are not

    from stereodistill.cli.train_cmd import load_run_config
    from stereodistill.train.trainer import Trainer

    cut = load_run_config(str(path), [f"output={tmp_path / 'cut'}"])
    Trainer(cut, distill=True).run(stop_at=3)
    assert main(["distill", str(path), f"output={tmp_path / 'cut'}", "--resume"]) == 0
    assert_same_run(tmp_path / "full", tmp_path / "cut")


def test_lr_consistent_mask_keeps_pixels_whose_views_agree():
    from stereodistill.distill.masks import full_resolution_mask

    left = torch.full((1, 2, 8), 2.0)
    agree = full_resolution_mask(
        "lr_consistent", valid=None, gt=None, teacher_disparity=left, teacher_right_disparity=torch.full((1, 2, 8), 2.4)
    )
    assert not agree[..., :2].any() and agree[..., 2:].all()  # the first two columns land outside
    disagree = full_resolution_mask(
        "lr_consistent", valid=None, gt=None, teacher_disparity=left, teacher_right_disparity=torch.full((1, 2, 8), 4.0)
    )
    assert not disagree.any()


def test_the_photometric_loss_alone_can_learn_from_unlabeled_pairs(tmp_path):
    data = {**TINY["data"], "unlabeled": UNLABELED, "unlabeled_ratio": 0.5}
    with pytest.raises(ConfigError, match="or the photometric loss"):
        from_dict(RunConfig, {**TINY, "data": data})
    with pytest.raises(ConfigError, match=r"photometric\.ssim"):
        from_dict(RunConfig, {**TINY, "photometric": {"weight": 1.0, "ssim": 2}})
    with pytest.raises(ConfigError, match=r"photometric\.mask valid"):
        from_dict(RunConfig, {**TINY, "data": data, "photometric": {"weight": 1.0, "mask": "valid"}})
    photometric = {"weight": 2.0, "mask": "lr_consistent"}
    run = {**TINY, "steps": 4, "data": data, "photometric": photometric, "output": str(tmp_path / "run")}
    path = tmp_path / "self.yaml"
    path.write_text(yaml.safe_dump(run))
    assert main(["train", str(path)]) == 0
    with open(tmp_path / "run" / "scalars.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    steps = {name: {int(r["step"]) for r in rows if r["name"] == name} for name in ("supervised", "photometric")}
    assert steps == {"supervised": {1, 3}, "photometric": {1, 2, 3, 4}}  # every batch, labelled or not
    assert all(float(r["value"]) > 0 for r in rows if r["name"] == "photometric")


def test_epochs_count_labelled_batches_and_a_small_unlabeled_set_is_named(tmp_path):
    from stereodistill.train.trainer import Trainer

    config = from_dict(RunConfig, {**mixed(tmp_path), "output": str(tmp_path / "run")})
    trainer = Trainer(config, distill=True)
    per_epoch = trainer.sampler.batches_per_epoch
    assert trainer.epoch_at(2 * per_epoch) == pytest.approx(1.0)  # ratio 0.5: half the steps are labelled
    settings = mixed(tmp_path)
    settings["data"]["unlabeled"] = {**UNLABELED, "pairs": 1}
    config = from_dict(RunConfig, {**settings, "output": str(tmp_path / "other")})
    with pytest.raises(ConfigError, match=r"data.unlabeled \(synthetic\) has 1 samples, fewer than one batch"):
        Trainer(config, distill=True)


def test_the_mirrored_pass_of_a_mask_leaves_batchnorm_statistics_alone():
    from stereodistill.distill.masks import right_view_disparity
    from stereodistill.train.trainer import batchnorm_statistics_kept

    student = build_model("lean-xs", max_disp=16).train()
    before = {k: v.clone() for k, v in student.state_dict().items() if "running" in k or "num_batches" in k}
    image = torch.rand(1, 3, 32, 64)
    with torch.no_grad(), batchnorm_statistics_kept(student):
        right_view_disparity(student, image, image.flip(-1))
    after = student.state_dict()
    assert all(torch.equal(value, after[key]) for key, value in before.items())
    with torch.no_grad():
        right_view_disparity(student, image, image.flip(-1))
    assert not all(torch.equal(value, student.state_dict()[key]) for key, value in before.items())


def test_unlabeled_pairs_are_read_as_views_alone_and_checked_before_any_step(tmp_path, capsys):
    import numpy as np

    from stereodistill.data.formats import write_image

    rng = np.random.default_rng(0)
    rows = ["left,right,disp"]
    for i in range(4):
        write_image(tmp_path / f"l{i}.png", rng.random((32, 64, 3)))
        write_image(tmp_path / f"r{i}.png", rng.random((32, 64, 3)))
        (tmp_path / f"d{i}.png").write_bytes(b"cut short")  # ground truth the run ignores, broken
        rows.append(f"l{i}.png,r{i}.png,d{i}.png")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    config = mixed(tmp_path, steps=4)
    config["data"]["unlabeled"] = {"dataset": "pairs", "root": str(tmp_path / "pairs.csv")}
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["distill", str(path), f"output={tmp_path / 'run'}"]) == 0
    write_image(tmp_path / "r3.png", rng.random((32, 60, 3)))  # views of different sizes: refused before training
    assert main(["distill", str(path), f"output={tmp_path / 'run2'}"]) == 2
    err = capsys.readouterr().err
    assert f"data.unlabeled ({tmp_path / 'pairs.csv'}): 1 bad pair(s), found before training" in err
    assert not (tmp_path / "run2" / "checkpoints").exists()

"""Adapting a student to unlabeled pairs: filtered pseudo-labels, cached, then ordinary training."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from stereodistill.checkpoint import load_model, save_model
from stereodistill.cli.main import main
from stereodistill.data.formats import write_image, write_pfm
from stereodistill.errors import ConfigError
from stereodistill.experiments.adapt import PseudoLabelSettings, pseudo_label
from stereodistill.models import build_model


class Constant(torch.nn.Module):
    """A 'teacher' that sees disparity ``left`` in the left view and ``right`` in the right view,
    with a peaked distribution."""

    def __init__(self, left: float, right: float) -> None:
        super().__init__()
        self.values = (left, right)
        self.calls = 0

    def offered_taps(self):
        return ("prob",)

    def forward(self, left, right, taps=()):
        value = self.values[self.calls % 2]
        self.calls += 1
        prob = torch.zeros(1, 8, *left.shape[-2:])
        prob[:, 2] = 0.9
        return SimpleNamespace(disparity=torch.full((1, *left.shape[-2:]), value), taps={"prob": prob})


def test_pseudo_labels_keep_only_left_right_consistent_confident_pixels():
    image = torch.rand(1, 3, 8, 16)
    filters = PseudoLabelSettings(lr_threshold=1.0, confidence=0.3)
    disparity, mask, _ = pseudo_label(Constant(3.0, 3.0), image, image, filters)
    assert np.allclose(disparity, 3.0)
    assert not mask[:, :3].any() and mask[:, 3:].all()  # the first 3 columns land outside the right view
    _, mask, _ = pseudo_label(Constant(3.0, 5.0), image, image, filters)
    assert not mask.any()  # the views disagree by 2 px
    _, mask, _ = pseudo_label(Constant(3.0, 3.0), image, image, PseudoLabelSettings(lr_threshold=1.0, confidence=0.95))
    assert not mask.any()  # a peak of 0.9 is not confident enough
    teacher = Constant(3.0, 5.0)
    _, mask, _ = pseudo_label(teacher, image, image, PseudoLabelSettings())  # the defaults: both filters off
    assert teacher.calls == 1 and not mask[:, :3].any() and mask[:, 3:].all()  # no right-view pass


def test_a_label_of_zero_is_never_kept():
    image = torch.rand(1, 3, 8, 16)
    _, mask, _ = pseudo_label(Constant(0.0, 0.0), image, image, PseudoLabelSettings())
    assert not mask.any()  # consistent and confident, but 0 px is no disparity


def test_sgbm_teaches_with_its_matches_only(tmp_path, capsys):
    """A classical teacher: no probabilities, its unmatched pixels never become labels, and it takes
    the student's range."""
    from stereodistill.data.formats import read_mask, read_pfm
    from stereodistill.data.motorcycle import load_motorcycle, reduce_pair

    left, right, disp = reduce_pair(*load_motorcycle(), 8)  # a real pair, 62x92
    for name, image in (("left", left), ("right", right)):
        write_image(tmp_path / "pairs" / name / "moto.png", image)
    write_pfm(tmp_path / "gt.pfm", np.nan_to_num(disp, nan=0.0, posinf=0.0).astype(np.float32))
    save_model(tmp_path / "student", build_model("lean", max_disp=16))
    command = ["adapt", "sgbm", str(tmp_path / "student"), "--unlabeled", str(tmp_path / "pairs")]
    command += [
        "--out",
        str(tmp_path / "a"),
        "--steps",
        "2",
        "--crop",
        "32x64",
        "--gate",
        "0",
        "--lr-threshold",
        "1",
    ]  # its filters
    assert main(command) == 0
    assert "sgbm has no probabilities" in capsys.readouterr().out
    (label,) = (tmp_path / "a" / "pseudo").glob("*.pfm")
    values, mask = read_pfm(label), read_mask(label.with_name(label.stem + "_mask.png"))
    assert 0.2 < mask.mean() < 1.0  # unmatched and inconsistent pixels are left out
    assert (values[mask] > 0).all() and (values[~mask] == 0).any()  # holes stay empty, not filled
    assert values.max() < 16 + 1e-3  # the student's range
    assert (
        main(
            [
                "adapt",
                "sgbm",
                str(tmp_path / "student"),
                "--unlabeled",
                str(tmp_path / "pairs"),
                "--out",
                str(tmp_path / "b"),
                "--teacher-arch",
                "psmnet",
            ]
        )
        == 2
    )
    assert "classical matcher" in capsys.readouterr().err
    assert main([*command[:5], "--out", str(tmp_path / "c"), "--confidence", "0.5"]) == 2  # sgbm gives no probabilities
    assert "gives no probabilities to filter by" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_adapt_labels_the_pairs_then_trains_the_student_from_its_weights(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = ["left,right,disp"]
    for name in ("a", "b"):
        write_image(tmp_path / "pairs" / f"{name}_l.png", rng.random((32, 64, 3)))
        write_image(tmp_path / "pairs" / f"{name}_r.png", rng.random((32, 64, 3)))
        truth = np.full((32, 64), 4.0, np.float32)
        truth[20:] = 20.0  # beyond the student's range of 16: not scored, and said so
        write_pfm(tmp_path / "pairs" / f"{name}.pfm", truth)
        rows.append(f"{name}_l.png,{name}_r.png,{name}.pfm")
    (tmp_path / "pairs" / "list.csv").write_text("\n".join(rows) + "\n")
    save_model(tmp_path / "teacher", build_model("dsnet", max_disp=16))
    save_model(tmp_path / "student", build_model("lean", max_disp=16))
    command = ["adapt", str(tmp_path / "teacher"), str(tmp_path / "student"), "--unlabeled"]
    command += [str(tmp_path / "pairs" / "list.csv"), "--out", str(tmp_path / "a"), "--steps", "2", "--crop", "32x64"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "pixels kept as labels" in printed and "not used for training" in printed
    assert "ground truth: 4,096 pixels; left out: 1,536 at or beyond 16 px, 0 occluded (37.5 %)" in printed
    assert "warning: more than 10% of the ground-truth pixels lie at or beyond 16 px" in printed
    assert "adapt a student of a larger range, or give the pairs at a smaller size" in printed  # advice adapt can take
    assert "photometric error on the kept pixels" in printed
    record = json.loads((tmp_path / "a" / "adapt.json").read_text())
    scores = record["ground_truth"]
    assert scores["before"]["epe"] > 0 and scores["after"]["epe"] > 0
    assert set(record["photometric_error"]) == {"labels", "student", "pixels"}
    assert record["photometric_error"]["pixels"] > 0
    kept = json.loads((tmp_path / "a" / "kept.json").read_text())
    assert len(kept) == 2 and all(0 <= k["teacher"] <= k["kept"] <= 1 for k in kept)
    assert "from the teacher" in printed  # the photometric gate is on by default
    assert load_model(tmp_path / "a" / "model").arch == "lean"  # the output folder is the run folder
    assert (tmp_path / "a" / "scalars.csv").is_file()
    page = (tmp_path / "a" / "report.html").read_text()
    assert "student before" in page and "images/01_after.png" in page and "never used for training" in page
    assert "lie at or beyond 16 px and are left out of these metrics" in page
    assert "the teacher's" in page and "keep the student's own disparity" in page
    assert (tmp_path / "a" / "images" / "00_label.png").is_file()
    assert len((tmp_path / "a" / "pseudo.csv").read_text().splitlines()) == 3
    assert main(command) == 2  # the folder holds a run
    assert "--force" in capsys.readouterr().err
    labels = sorted((tmp_path / "a" / "pseudo").iterdir())
    stamps = [p.stat().st_mtime_ns for p in labels]
    assert main([*command, "--resume"]) == 0  # the labels are reused, not computed again
    assert sorted((tmp_path / "a" / "pseudo").iterdir()) == labels
    assert [p.stat().st_mtime_ns for p in labels] == stamps
    save_model(tmp_path / "small", build_model("lean", max_disp=8))
    command[1] = str(tmp_path / "small")
    assert main([*command, "--force"]) == 2
    assert "below the student's" in capsys.readouterr().err


def test_adapt_starts_a_student_from_scratch_and_refuses_release_options_without_an_arch(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for side in ("left", "right"):
        write_image(tmp_path / "cam" / side / "0001.png", rng.random((32, 64, 3)))
    save_model(tmp_path / "teacher", build_model("lean", max_disp=16))
    command = ["adapt", str(tmp_path / "teacher"), "lean-xs", "--unlabeled", str(tmp_path / "cam")]
    command += ["--out", str(tmp_path / "a"), "--steps", "1", "--crop", "32x64"]
    assert main([*command, "--teacher-option", "align_corners=true"]) == 2
    assert "--teacher-arch" in capsys.readouterr().err
    write_image(tmp_path / "cam" / "left" / "0002.png", rng.random((32, 64, 3)))
    write_image(tmp_path / "cam" / "right" / "0002.png", rng.random((16, 64, 3)))
    assert main(command) == 2
    assert "0002.png: is 16x64 (HxW)" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # nothing written for a refused list
    assert main([*command, "--skip-bad"]) == 0
    assert load_model(tmp_path / "a" / "model").arch == "lean-xs"
    assert (tmp_path / "a" / "pairs.csv").is_file() and "ground_truth" not in (
        tmp_path / "a" / "adapt.json"
    ).read_text()


def camera_and_networks(tmp_path, seed: int) -> list[str]:
    """One random 32×64 pair in a camera folder, a saved `lean` teacher and `lean-xs` student: the
    start of an ``adapt`` command line on them."""
    rng = np.random.default_rng(seed)
    for side in ("left", "right"):
        write_image(tmp_path / "cam" / side / "0001.png", rng.random((32, 64, 3)))
    save_model(tmp_path / "teacher", build_model("lean", max_disp=16))
    save_model(tmp_path / "student", build_model("lean-xs", max_disp=16))
    return ["adapt", str(tmp_path / "teacher"), str(tmp_path / "student"), "--unlabeled", str(tmp_path / "cam")]


def test_adapt_reads_a_config_file_that_flags_override_and_checks_it_before_writing(tmp_path, capsys):
    import yaml

    command = camera_and_networks(tmp_path, seed=2)
    settings = {"steps": 3, "crop": [32, 64], "confidence": 0.0, "run": {"data": {"color_jitter": False}}}
    (tmp_path / "adapt.yaml").write_text(yaml.safe_dump(settings))
    assert main([*command, "--out", str(tmp_path / "a"), "--config", str(tmp_path / "adapt.yaml"), "--steps", "1"]) == 0
    saved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert saved["steps"] == 1  # the flag wins over the file
    assert saved["data"]["crop"] == [32, 64] and saved["data"]["color_jitter"] is False  # the file's settings
    capsys.readouterr()
    for bad, named in (({"step": 2}, "step"), ({"run": {"data": {"colour_jitter": False}}}, "colour_jitter")):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        assert main([*command, "--out", str(tmp_path / "b"), "--config", str(tmp_path / "bad.yaml")]) == 2
        assert named in capsys.readouterr().err
        assert not (tmp_path / "b").exists()  # nothing written


def test_adapt_can_learn_from_the_images_alone_and_refuses_to_learn_from_nothing(tmp_path, capsys):
    import yaml

    command = camera_and_networks(tmp_path, seed=3)
    command += ["--out", str(tmp_path / "a"), "--steps", "2", "--crop", "32x64"]
    (tmp_path / "negative.yaml").write_text(yaml.safe_dump({"photometric": -1}))  # a file's values: checked alike
    refused = {
        "one must be above 0": ["--labels", "0", "--photometric", "0"],
        "photometric is the weight of a loss: a number >= 0, got -1": ["--config", str(tmp_path / "negative.yaml")],
    }
    for message, weights in refused.items():
        assert main([*command, *weights]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "a").exists()
    with pytest.raises(SystemExit):  # a flag's value is the flag's error
        main([*command, "--photometric", "-1"])
    assert "argument --photometric: expected a finite number >= 0, got '-1'" in capsys.readouterr().err
    assert main([*command, "--labels", "0", "--photometric", "1"]) == 0
    saved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert saved["supervised"]["weight"] == 0 and saved["photometric"]["weight"] == 1
    scalars = (tmp_path / "a" / "scalars.csv").read_text()
    assert ",photometric," in scalars


def test_the_gate_keeps_a_teacher_pixel_only_where_it_explains_the_pair_better_than_the_student():
    left = torch.rand(1, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    right = torch.cat((left[..., 4:], left[..., -1:].expand(-1, -1, -1, 4)), -1)  # right(x) = left(x + 4)
    gated = PseudoLabelSettings(gate=5)
    label, kept, taught = pseudo_label(Constant(4.0, 4.0), left, right, gated, student=Constant(1.0, 1.0))
    assert taught.mean() > 0.8 and np.all(label[taught] == 4.0)  # the teacher wins where it sees
    assert np.allclose(label[kept & ~taught], 1.0)  # and the student keeps its own elsewhere
    label, kept, taught = pseudo_label(Constant(1.0, 1.0), left, right, gated, student=Constant(4.0, 4.0))
    assert taught.mean() < 0.05 and kept.mean() > 0.99 and (label[kept] == 4.0).mean() > 0.95
    _, kept, taught = pseudo_label(Constant(1.0, 1.0), left, right, PseudoLabelSettings(gate=0), Constant(4.0, 4.0))
    assert np.array_equal(taught, kept) and kept.mean() > 0.9  # no gate: the teacher's filtered pixels alone
    with pytest.raises(ConfigError, match="gate is a window"):
        PseudoLabelSettings(gate=-1)


def test_label_check_tells_labels_that_explain_the_pair_from_labels_that_do_not(tmp_path):
    """Labels at the true disparity score below a student that is wrong, and the other way round."""
    from stereodistill.data.datasets import build_dataset
    from stereodistill.experiments.adapt import label_check

    left = np.random.default_rng(0).random((32, 64, 3)).astype(np.float32)
    right = np.concatenate((left[:, 4:], np.repeat(left[:, -1:], 4, axis=1)), axis=1)  # right(x) = left(x + 4)
    write_image(tmp_path / "l.png", left)
    write_image(tmp_path / "r.png", right)
    write_image(tmp_path / "mask.png", np.ones((32, 64, 3), np.float32))
    (tmp_path / "pairs.csv").write_text("left,right\nl.png,r.png\n")
    pairs = build_dataset("pairs", str(tmp_path / "pairs.csv"))

    def check(label: float, student: float) -> dict[str, float]:
        write_pfm(tmp_path / "label.pfm", np.full((32, 64), label, np.float32))
        (tmp_path / "labels.csv").write_text("left,right,disp,mask\nl.png,r.png,label.pfm,mask.png\n")
        return label_check(Constant(student, student), pairs, tmp_path / "labels.csv", torch.device("cpu"))

    good = check(label=4.0, student=1.0)
    assert good["labels"] < 0.01 < good["student"]
    bad = check(label=1.0, student=4.0)
    assert bad["student"] < 0.01 < bad["labels"]
    lost = check(label=4.0, student=90.0)  # the student's matches all lie outside the right view
    assert lost["pixels"] == 0 and math.isnan(lost["labels"]) and math.isnan(lost["student"])  # no verdict, not 0 vs 0


def test_the_label_check_reads_every_pair_up_to_its_limit_then_an_even_spread():
    from stereodistill.experiments.adapt import spread

    assert spread(4, 16) == [0, 1, 2, 3]  # fewer pairs than the limit: all of them
    assert spread(10, 4) == [0, 3, 6, 9]
    assert spread(1, 16) == [0]


def test_a_bad_list_never_costs_the_previous_run_even_with_force(tmp_path, capsys):
    command = camera_and_networks(tmp_path, seed=4)
    command += ["--out", str(tmp_path / "a"), "--steps", "1", "--crop", "32x64"]
    assert main(command) == 0
    before = sorted(p.name for p in (tmp_path / "a").iterdir())
    write_image(tmp_path / "cam" / "left" / "0002.png", np.zeros((32, 64, 3)))  # a frame the right camera dropped
    assert main([*command, "--force"]) == 2
    assert "0002.png: no other view" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == before  # checked before the folder was cleared
    command[command.index("--unlabeled") + 1] = str(tmp_path / "cam" / "left")  # a view, not the folder of both
    assert main([*command, "--force"]) == 2
    assert "left: has no left/ and no right/ folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == before


def test_an_interrupted_run_resumes_from_its_checkpoint_or_restarts_training_on_its_labels(tmp_path, capsys):
    import shutil

    command = camera_and_networks(tmp_path, seed=5)
    command += ["--out", str(tmp_path / "a"), "--crop", "32x64"]
    assert main([*command, "--steps", "2"]) == 0
    assert main([*command, "--steps", "4", "--resume"]) == 2  # a longer run is a change, which must be accepted
    assert "--allow-changes" in capsys.readouterr().err
    assert main([*command, "--steps", "4", "--resume", "--allow-changes"]) == 0
    progress = capsys.readouterr().err
    assert "step 3/4" in progress and "step 1/4" not in progress  # continued from the checkpoint at step 2
    # Stopped before its first checkpoint: what training wrote goes, the labels stay and are reused.
    labels = sorted((tmp_path / "a" / "pseudo").iterdir())
    shutil.rmtree(tmp_path / "a" / "checkpoints")
    assert main([*command, "--steps", "4", "--resume"]) == 0
    printed = capsys.readouterr()
    assert "training starts over on the cached labels" in printed.out and "step 1/4" in printed.err
    assert sorted((tmp_path / "a" / "pseudo").iterdir()) == labels
    assert main([*command, "--resume", "--out", str(tmp_path / "empty")]) == 2
    assert "no adapt run there to continue" in capsys.readouterr().err
    # Other labels under the same run: another teacher, other filters.
    for change, named in ((["--gate", "0"], "filter.gate: 5 -> 0"), (["--lr-threshold", "2"], "filter.lr_threshold")):
        assert main([*command, "--steps", "4", "--resume", *change]) == 2
        assert named in capsys.readouterr().err
    same = [*command[:1], f"{command[1]}.safetensors", *command[2:]]  # the same teacher, spelled otherwise
    assert main([*same, "--steps", "4", "--resume"]) == 0
    capsys.readouterr()
    other = [*command[:1], "sgbm", *command[2:]]
    assert main([*other, "--steps", "4", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "teacher: " in err and "teacher_network: '" in err and "-> 'sgbm(max_disp=" in err  # which network, readably
    assert main([*other, "--steps", "4", "--resume", "--allow-changes"]) == 2  # finished: new labels, old model
    assert "the run is finished (step 4): new labels would change its records but not its model" in (
        capsys.readouterr().err
    )
    assert main([*other, "--steps", "6", "--resume", "--allow-changes"]) == 0  # trained on: accepted, and said
    printed = capsys.readouterr()
    assert "changed since the run began: teacher" in printed.out and "step 5/6" in printed.err


def test_a_new_run_never_takes_the_labels_an_interrupted_run_left_in_its_folder(tmp_path, capsys):
    command = camera_and_networks(tmp_path, seed=9)
    command += ["--out", str(tmp_path / "a"), "--crop", "32x64", "--steps", "2"]
    assert main(command) == 0
    import shutil

    from stereodistill.experiments.adapt import INPUTS

    for path in (tmp_path / "a").iterdir():  # as a run stopped while labelling leaves its folder
        if path.name not in INPUTS:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert main(command) == 2  # no --resume, no --force: its labels would be thrown away unsaid
    assert "holds a run already: give another --out, --resume to continue, or --force" in capsys.readouterr().err
    assert (tmp_path / "a" / "pseudo").is_dir()


def test_a_resume_knows_the_student_by_its_file_not_by_how_its_path_is_spelled(tmp_path, capsys, monkeypatch):
    command = camera_and_networks(tmp_path, seed=6)
    command += ["--out", str(tmp_path / "a"), "--crop", "32x64", "--steps", "2"]
    assert main(command) == 0
    monkeypatch.chdir(tmp_path)  # the same student, relative and with its suffix; the same output folder
    same = [*command[:2], "student.safetensors", *command[3:5], "--out", "a", *command[7:]]
    assert main([*same, "--resume"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    save_model(tmp_path / "student", build_model("lean-xs", max_disp=16))  # new weights under the same name
    assert main([*command, "--resume"]) == 2  # the report's "before" and the gate would be another student's
    assert "the labels would come from other inputs (student: " in capsys.readouterr().err


def test_adapt_reads_and_writes_paths_that_hold_commas(tmp_path):
    command = camera_and_networks(tmp_path, seed=6)
    camera = tmp_path / "day 1, take 2"
    (tmp_path / "cam").rename(camera)
    command[command.index("--unlabeled") + 1] = str(camera)
    assert main([*command, "--out", str(tmp_path / "a,b"), "--steps", "1", "--crop", "32x64"]) == 0
    assert load_model(tmp_path / "a,b" / "model").arch == "lean-xs"


def test_settings_adapt_owns_or_cannot_use_are_refused_before_any_work(tmp_path, capsys):
    import yaml

    command = camera_and_networks(tmp_path, seed=7)
    command += ["--out", str(tmp_path / "a"), "--steps", "1", "--crop", "32x64"]
    refused = {
        "run.steps: adapt sets steps itself; set it with --steps": ["--config", "run_steps.yaml"],
        "run.output: adapt sets output itself; set it with --out": ["--config", "run_output.yaml"],
        "lr_threshold is a distance in px above 0": ["--lr-threshold", "-1"],
        "confidence is a probability in [0, 1]": ["--confidence", "2"],
    }
    (tmp_path / "run_steps.yaml").write_text(yaml.safe_dump({"run": {"steps": 3}}))
    (tmp_path / "run_output.yaml").write_text(yaml.safe_dump({"run": {"output": str(tmp_path / "elsewhere")}}))
    for message, flags in refused.items():
        flags = [str(tmp_path / flag) if flag.endswith(".yaml") else flag for flag in flags]
        assert main([*command, *flags]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "a").exists()
    for flags, message in (  # a flag's value is the flag's error, not one of a "run:" section nobody wrote
        (["--lr", "-1"], "argument --lr: expected a finite number above 0, got '-1'"),
        (["--clamp", "-3"], "argument --clamp: expected a finite number >= 0, got '-3'"),
        (["--labels", "nan"], "argument --labels: expected a finite number >= 0, got 'nan'"),
    ):
        with pytest.raises(SystemExit) as stopped:
            main([*command, *flags])
        assert stopped.value.code == 2 and message in capsys.readouterr().err
        assert not (tmp_path / "a").exists()
    command[2] = "sgbm"  # a student with nothing to train: refused before the teacher labels anything
    assert main(command) == 2
    assert "the student sgbm is a classical method" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_a_listed_pair_that_cannot_be_read_is_refused_before_labelling_or_left_out(tmp_path, capsys):
    command = camera_and_networks(tmp_path, seed=8)
    (tmp_path / "cam" / "left" / "0002.png").write_bytes(b"not an image")
    (tmp_path / "cam" / "right" / "0002.png").write_bytes(b"not an image")
    listing = tmp_path / "list.csv"
    listing.write_text("left,right\ncam/left/0001.png,cam/right/0001.png\ncam/left/0002.png,cam/right/0002.png\n")
    command[command.index("--unlabeled") + 1] = str(listing)
    command += ["--out", str(tmp_path / "a"), "--steps", "1", "--crop", "32x64"]
    assert main(command) == 2
    assert "1 bad pair(s)" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert main([*command, "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "SKIPPED" in printed and "0002.png" in printed and "for 1 pairs" in printed
    # The pairs kept keep their ground truth and its mask (what the before/after scores count).
    write_pfm(tmp_path / "gt.pfm", np.ones((32, 64), np.float32))
    write_image(tmp_path / "half.png", np.repeat(np.arange(64) < 32, 32).reshape(64, 32).T[..., None].repeat(3, 2))
    rows = "cam/left/0001.png,cam/right/0001.png,gt.pfm,half.png\ncam/left/0002.png,cam/right/0002.png,,\n"
    listing.write_text("left,right,disp,mask\n" + rows)
    assert main([*command[:-6], "--out", str(tmp_path / "m"), "--steps", "1", "--crop", "32x64", "--skip-bad"]) == 0
    capsys.readouterr()
    assert (tmp_path / "m" / "pairs.csv").read_text().splitlines()[0] == "left,right,disp,mask"
    assert json.loads((tmp_path / "m" / "adapt.json").read_text())["ground_truth"]["before"]["valid_pixels"] == 1024
    write_image(tmp_path / "big_mask.png", np.ones((40, 80, 3), np.float32))  # a mask of another size: refused
    listing.write_text("left,right,disp,mask\ncam/left/0001.png,cam/right/0001.png,gt.pfm,big_mask.png\n")
    assert main([*command[:-6], "--out", str(tmp_path / "n"), "--steps", "1", "--crop", "32x64"]) == 2
    assert "big_mask.png: is 40x80 (HxW) but its images are 32x64" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()
    # Ground truth of another size: found from its header before labelling, like a bad view.
    write_pfm(tmp_path / "small.pfm", np.ones((16, 32), np.float32))
    listing.write_text("left,right,disp\ncam/left/0001.png,cam/right/0001.png,small.pfm\n")
    assert main([*command[:-6], "--out", str(tmp_path / "b"), "--steps", "1", "--crop", "32x64"]) == 2
    assert "small.pfm: is 16x32 (HxW) but its images are 32x64" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_force_never_deletes_the_footage_or_the_networks_that_the_run_reads(tmp_path, capsys):
    import shutil

    command = camera_and_networks(tmp_path, seed=6)
    flags = ["--steps", "1", "--crop", "32x64", "--force"]
    # The footage inside the output folder, then the student (a previous adapt run's model, re-adapted in place).
    cases = [(tmp_path / "cam", "cam, which"), (tmp_path, ".safetensors, which")]
    for out, named in cases:
        held = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        assert main([*command, "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err
        assert named in err and "--force would delete" in err and "Traceback" not in err
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == held  # nothing deleted
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "settings.yaml").write_text("steps: 1\n")  # the settings file in the output folder
    assert (
        main([*command, "--out", str(tmp_path / "run"), *flags, "--config", str(tmp_path / "run" / "settings.yaml")])
        == 2
    )
    assert "settings.yaml, which this run reads" in capsys.readouterr().err
    shutil.copytree(tmp_path / "cam", tmp_path / "run" / "cam")
    inside = [*command[:4], str(tmp_path / "run" / "cam")]
    assert main([*inside, "--out", str(tmp_path / "run"), *flags]) == 2  # a list in a subfolder counts as well
    assert (tmp_path / "run" / "cam" / "left" / "0001.png").is_file()


def test_an_image_that_fails_only_when_decoded_stops_labelling_resumably_or_is_left_out(tmp_path, capsys):
    command = camera_and_networks(tmp_path, seed=9)
    rng = np.random.default_rng(9)
    for side in ("left", "right"):
        write_image(tmp_path / "cam" / side / "0002.png", rng.random((32, 64, 3)))
    broken = tmp_path / "cam" / "left" / "0002.png"
    whole = broken.read_bytes()
    broken.write_bytes(whole[: len(whole) // 2])  # its header is fine: found only when decoded
    command += ["--out", str(tmp_path / "a"), "--steps", "1", "--crop", "32x64"]
    assert main(command) == 2
    error = capsys.readouterr().err
    assert f"{broken}: not a readable image" in error and "--resume" in error and "--skip-bad" in error
    assert not (tmp_path / "a" / "model.safetensors").exists()
    broken.write_bytes(whole)  # mended: the run goes on from the labels it made
    assert main([*command, "--resume"]) == 0
    assert "pseudo-label 2/2" in capsys.readouterr().out
    broken.write_bytes(whole[: len(whole) // 2])
    assert main([*command[:-6], "--out", str(tmp_path / "b"), "--steps", "1", "--crop", "32x64", "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert f"SKIPPED {broken}" in printed and "pseudo-label 2/2" not in printed
    listed = (tmp_path / "b" / "pairs.csv").read_text().splitlines()
    assert listed == ["left,right", "../cam/left/0001.png,../cam/right/0001.png"]  # what is scored and checked
    skipping = [*command[:-6], "--out", str(tmp_path / "b"), "--steps", "1", "--crop", "32x64", "--skip-bad"]
    assert main([*skipping, "--resume"]) == 0  # the batch the first run took for one pair is not a change
    capsys.readouterr()
    broken.write_bytes(whole)  # mended after the run trained on the other pair alone
    resuming = [*command[:-6], "--out", str(tmp_path / "b"), "--steps", "1", "--crop", "32x64", "--resume"]
    assert main(resuming) == 2
    assert "the run trained on other pairs (0001-0002 labelled now); --allow-changes" in capsys.readouterr().err
    assert main(resuming) == 2  # asked again: the record of what it trained on stays
    first = tmp_path / "cam" / "left" / "0001.png"
    kept_first = first.read_bytes()
    first.write_bytes(kept_first[: len(kept_first) // 2])  # as many pairs as before, but not the same one
    assert main([*resuming, "--skip-bad"]) == 2
    assert "(0001-0002 labelled now, 0000-0001 no more)" in capsys.readouterr().err
    first.write_bytes(kept_first)
    kept = tmp_path / "b" / "kept.json"
    record = kept.read_text()
    kept.write_text("{}")
    assert main(resuming) == 2
    assert f"{kept}: is damaged: it holds a dict, not a list; --force" in capsys.readouterr().err
    kept.write_text(record)
    assert main([*resuming, "--allow-changes"]) == 0
    assert "changed since the run began: the run trained on other pairs" in capsys.readouterr().out


def test_a_damaged_labelling_record_is_named_on_resume(tmp_path):
    from stereodistill.errors import DataError
    from stereodistill.experiments.adapt import check_labelling

    record = tmp_path / "labelling.json"
    record.write_text("[1]")
    with pytest.raises(DataError, match=r"labelling.json: is damaged: it holds a list, not a mapping; --force"):
        check_labelling(record, {"teacher": "t"}, allow_changes=False, log=print)


def test_an_image_given_as_the_footage_is_named_as_an_image(tmp_path, capsys):
    command = camera_and_networks(tmp_path, seed=7)
    command[-1] = str(tmp_path / "cam" / "left" / "0001.png")
    assert main([*command, "--out", str(tmp_path / "a")]) == 2
    assert "0001.png: is an image; give the folder holding left/ and right/, or a list" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()

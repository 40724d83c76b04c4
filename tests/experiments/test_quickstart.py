"""The quickstart pipeline on a tiny recipe: the configs it derives, and every file it promises."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stereodistill.data import motorcycle
from stereodistill.errors import ConfigError
from stereodistill.experiments.quickstart import ROLES, check_pairing, load_recipe, run_configs, run_quickstart
from stereodistill.report.quickstart_report import markdown, verdict


def tiny_recipe() -> dict:
    return {
        "common": {
            "model": {"max_disp": 16},
            "data": {
                "train": {"dataset": "synthetic", "pairs": 8, "size": [32, 64], "max_disp": 16},
                "crop": [32, 64],
                "batch_size": 2,
            },
            "optim": {"name": "adam", "lr": 1e-3, "schedule": "constant"},
            "log_every": 1,
            "val_every": 1,
            "precise_bn": 1,  # as the packaged recipe recomputes its statistics: run end to end here
        },
        "teacher": {"steps": 2, "model": {"arch": "dsnet-noatt", "options": {"hourglass_channels": 8}}},
        "student": {"steps": 2, "model": {"arch": "dsnet-noatt", "options": {"hourglass_channels": 8}}},
        "distill": {
            "distill": {
                "terms": [
                    {"name": "feat", "student": "feat.left.s4", "teacher": "feat.left.s4", "loss": "cosine"},
                    {"name": "kl", "student": "logits.2", "teacher": "logits.2", "loss": "kl"},
                ]
            }
        },
        "test": {"pairs": 2, "images": 1},
        "bench": {"size": [32, 64], "repeats": 1, "threads": 1},
    }


def test_packaged_recipe_derives_students_that_differ_only_by_distillation(tmp_path):
    configs = run_configs(load_recipe(), tmp_path, seed=3)
    scratch, distilled = configs["student_scratch"], configs["student_distilled"]
    assert scratch.model == distilled.model and scratch.seed == distilled.seed == 3
    assert scratch.total_steps == distilled.total_steps and scratch.optim == distilled.optim
    assert scratch.data == distilled.data
    assert scratch.precise_bn == distilled.precise_bn == configs["teacher"].precise_bn > 0
    assert scratch.distill.terms == [] and distilled.distill.terms
    assert distilled.teacher.checkpoint == str(tmp_path / "runs" / "teacher" / "model")
    assert configs["teacher"].model.arch == "lean-l" and scratch.model.arch == "lean"
    assert scratch.data.val.root == str(tmp_path / "data" / "synthetic")
    scaled = run_configs(load_recipe(), tmp_path, seed=0, steps_scale=0.5)
    assert scaled["teacher"].total_steps == round(configs["teacher"].total_steps * 0.5)


def test_a_recipe_may_hold_only_what_differs_from_its_base(tmp_path):
    packaged = load_recipe()
    path = tmp_path / "r.yaml"
    path.write_text("base: quickstart\nteacher:\n  model: {options: {fine_block: 5}}\nstudent: {steps: 7}\n")
    recipe = load_recipe(path)
    assert recipe["teacher"]["model"] == {
        "arch": packaged["teacher"]["model"]["arch"],
        "options": {**packaged["teacher"]["model"]["options"], "fine_block": 5},
    }
    assert recipe["student"]["steps"] == 7 and recipe["student"]["model"] == packaged["student"]["model"]
    assert recipe["common"] == packaged["common"] and recipe["distill"] == packaged["distill"]
    (tmp_path / "child.yaml").write_text("base: r.yaml\nstudent: {steps: 9}\n")  # a base may have a base
    child = load_recipe(tmp_path / "child.yaml")
    assert child["student"]["steps"] == 9 and child["teacher"] == recipe["teacher"]
    path.write_text("base: child.yaml\n")
    with pytest.raises(ConfigError, match=r"base child\.yaml forms a cycle of bases"):
        load_recipe(tmp_path / "child.yaml")
    path.write_text("base: 3\n")
    with pytest.raises(ConfigError, match="base must be 'quickstart' or a recipe file, got 3"):
        load_recipe(path)
    # The shipped variants are such recipes: the earlier packaged recipe (a dsnet-teacher, no block
    # match) and the same with the block match; they load, and their students can serve their terms.
    configs = Path(__file__).parents[2] / "configs"
    earlier = load_recipe(configs / "quickstart_dsnet_teacher.yaml")
    assert earlier["teacher"]["model"]["arch"] == "dsnet-teacher" and earlier["student"]["steps"] == 600
    block = load_recipe(configs / "quickstart_block.yaml")
    assert block["teacher"]["model"]["arch"] == "dsnet-teacher"
    assert block["student"]["model"]["options"] == {"fine": 4, "fine_block": 5, "fine_polish": 1}
    for variant in (earlier, block):
        for student in (None, "dsnet"):
            check_pairing(run_configs(variant, tmp_path, seed=0, student=student))
        # They train every network on the common 400 scenes, as then; the packaged teacher reads 8,000.
        assert {c.data.train.pairs for c in run_configs(variant, tmp_path, seed=0).values()} == {400}
    pairs = {role: c.data.train.pairs for role, c in run_configs(load_recipe(), tmp_path, seed=0).items()}
    assert pairs == {"teacher": 8000, "student_scratch": 400, "student_distilled": 400}


def test_recipe_sections_are_checked(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("common: {}\nteacher: {}\nstudent: {}\ndistil: {}\n")
    with pytest.raises(ConfigError, match=r"unknown section\(s\) distil.*missing section\(s\) distill"):
        load_recipe(path)
    recipe = tiny_recipe()
    recipe["test"]["pair"] = 3
    with pytest.raises(ConfigError, match="unknown key"):
        run_configs(recipe, tmp_path, seed=0)
    recipe = tiny_recipe()
    recipe["bench"]["repeat"] = 3
    with pytest.raises(ConfigError, match=r"unknown key 'quickstart recipe \(bench\)\.repeat'; did you mean 'repeats'"):
        run_configs(recipe, tmp_path, seed=0)
    # Values that cannot run are refused before any work, not after the three trainings.
    for section, key, value, problem in (
        ("bench", "repeats", "five", "repeats"),
        ("bench", "size", 256, "size"),
        ("bench", "threads", 0, "must be positive"),
        ("test", "images", "x", "images"),
        ("test", "pairs", 0, "must be positive"),
        ("teacher", "steps", "x", "'steps' must be a whole number"),
    ):
        recipe = tiny_recipe()
        recipe.setdefault(section, {})[key] = value
        with pytest.raises(ConfigError, match=problem):
            run_configs(recipe, tmp_path, seed=0)
    recipe = tiny_recipe()  # a float range, as data.train.max_disp allows, is the test split's too
    recipe["common"]["data"]["train"]["max_disp"] = 16.0
    recipe["test"].pop("max_disp", None)
    assert run_configs(recipe, tmp_path, seed=0)["teacher"].data.val.max_disp == 16.0
    path.write_text("common:\nteacher: {}\nstudent: {}\ndistill: {}\n")
    with pytest.raises(ConfigError, match="'common' must be a mapping"):
        load_recipe(path)
    recipe = tiny_recipe()
    recipe["student"]["optim"] = {"lr": "fast"}
    with pytest.raises(ConfigError, match="lr"):
        run_configs(recipe, tmp_path, seed=0)


@pytest.mark.parametrize("side_by_side", [False, True])
def test_quickstart_writes_the_promised_report(tmp_path, monkeypatch, side_by_side):
    monkeypatch.chdir(tmp_path)  # checkpoint paths are relative to the repository root (here: the cwd)
    real = motorcycle.load_motorcycle()
    # A 64×96 window of the real pair (far background, disparities < 16) keeps the test fast;
    # the full pair is evaluated in the data and CLI tests.
    monkeypatch.setattr(motorcycle, "load_motorcycle", lambda: tuple(a[0:64, 176:272] for a in real))
    lines: list[str] = []
    report = run_quickstart(
        Path("qs"), seed=1, recipe=tiny_recipe(), device="cpu", side_by_side=side_by_side, log=lines.append
    )
    phases = [line[:5] for line in lines if line.startswith("[")]
    trained = ["[2/5]"] * (2 if side_by_side else 3)  # the teacher, then the students at once or in turn
    assert phases == ["[1/5]", *trained, "[3/5]", "[4/5]", "[5/5]"]
    assert ("side by side" in lines[2]) == side_by_side
    assert sorted(line.split()[0] for line in lines if "finished in" in line) == (
        ["student_distilled", "student_scratch"] if side_by_side else []
    )
    on_disk = json.loads((tmp_path / "qs" / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert set(on_disk["models"]) == set(ROLES)
    for role in ROLES:
        entry = on_disk["models"][role]
        assert entry["checkpoint"] == f"qs/runs/{role}/model.safetensors"
        assert (tmp_path / entry["checkpoint"]).is_file()
        assert entry["arch"] == "dsnet-noatt" and entry["params"] > 0 and entry["gmacs"] > 0
        assert entry["latency_ms"] > 0
        for dataset in ("synthetic", "middlebury-motorcycle"):
            metrics = entry["metrics"][dataset]
            assert {"epe", "d1", "bad1", "bad2", "bad3"} <= set(metrics)
            assert all(0 <= metrics[k] <= 1 for k in ("d1", "bad1", "bad2", "bad3"))
    sgbm = on_disk["baselines"]["sgbm"]["metrics"]  # the classical floor, same evaluation
    assert set(sgbm) == {"synthetic", "middlebury-motorcycle"} and sgbm["synthetic"]["epe"] > 0
    gain = on_disk["distillation"]
    assert gain["epe_reduction"] == pytest.approx(gain["epe_scratch"] - gain["epe_distilled"])
    assert gain["distilled_beats_scratch"] == (gain["epe_distilled"] < gain["epe_scratch"])
    assert on_disk["seed"] == 1 and on_disk["steps"] == {r: 2 for r in ROLES}
    together = "train_students_side_by_side"
    assert (together in on_disk["timing_s"]) == side_by_side
    assert ("train_student_scratch" in on_disk["timing_s"]) != side_by_side
    assert all(on_disk["models"][role]["train_seconds"] > 0 for role in ROLES)

    md = (tmp_path / "qs" / "report.md").read_text()
    assert verdict(report) in md and md == markdown(report)
    assert "SGBM, the classical baseline, is missing" not in md
    assert "SGBM, the classical baseline, is missing: OpenCV was not installed" in markdown({**report, "baselines": {}})
    coverage = on_disk["models"]["teacher"]["metrics"]["middlebury-motorcycle"]["ground_truth"]
    assert coverage["left_out"] == 0 and f"the metrics count {coverage['with_gt']:,} of its" in md
    page = (tmp_path / "qs" / "report.html").read_text()
    assert page.count("<svg") == 3 and "training loss" in page and "validation EPE" in page
    assert "EPE against latency" in page  # the speed/accuracy plane of the three models
    for svg in page.split("<svg")[1:]:
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")
    images = sorted(p.name for p in (tmp_path / "qs" / "images").iterdir())
    # 1 synthetic pair + Motorcycle: left, gt, maps, errors; and the two colour bars.
    assert len(images) == 2 * (2 + 2 * len(ROLES)) + 2 and "colorbar_error.png" in images
    assert [name for name in images if f'src="images/{name}"' not in page] == []
    assert '<a href="images/00_teacher.png">' in page  # every map links to its full size
    assert "one seed" in verdict(report) and "docs/results.md" in verdict(report)
    for scratch in (math.nan, math.inf, None):  # None: a report.json read back (JSON has no infinity)
        judged = {**report, "distillation": {**report["distillation"], "epe_scratch": scratch}}
        assert verdict(judged).startswith("Distillation cannot be judged this time") and "not finite" in verdict(judged)


def test_student_argument_takes_its_familys_recipe(tmp_path):
    recipe = load_recipe()
    default = run_configs(recipe, tmp_path, seed=0)
    assert default["student_scratch"].model.arch == "lean"  # the recommended student
    for arch in ("lean", "lean-xs"):  # the default sections, on the member asked for
        configs = run_configs(recipe, tmp_path, seed=0, student=arch)
        scratch, distilled = configs["student_scratch"], configs["student_distilled"]
        assert scratch.model.arch == distilled.model.arch == arch
        assert scratch.model == distilled.model and scratch.optim == distilled.optim
        assert scratch.optim == default["student_scratch"].optim
        assert distilled.distill.terms == default["student_distilled"].distill.terms
        assert configs["teacher"] == default["teacher"]
    for arch in ("dsnet", "dsnet-noatt"):  # the dsnet family's own entry
        configs = run_configs(recipe, tmp_path, seed=0, student=arch)
        scratch, distilled = configs["student_scratch"], configs["student_distilled"]
        assert scratch.model.arch == arch and scratch.optim.lr == recipe["common"]["optim"]["lr"]
        assert {t.student for t in distilled.distill.terms} >= {"logits.2", "volume.cost"}
    # An architecture without an entry keeps the default student's terms, with the options it takes:
    # a member of the family all of them, another network only `fine`, which every network takes.
    recipe["student"]["model"]["options"] = {"width": 0.5, "census": 3, "fine": 2}
    member = run_configs(recipe, tmp_path, seed=0, student="lean-s")["student_scratch"]
    assert member.model.options == {"width": 0.5, "census": 3, "fine": 2}
    other = run_configs(recipe, tmp_path, seed=0, student="psmnet")["student_scratch"]
    assert other.model.arch == "psmnet" and other.model.options == {"fine": 2}
    with pytest.raises(ConfigError, match=r"not an architecture.*lean"):
        run_configs(recipe, tmp_path, seed=0, student="lean-xxl")


def test_packaged_recipe_pairs_every_student_with_the_teacher(tmp_path):
    for arch in ("lean", "lean-s", "lean-xs", "lean-l", "dsnet", "dsnet-noatt"):
        check_pairing(run_configs(load_recipe(), tmp_path, seed=0, student=arch))


def test_a_student_that_cannot_serve_the_terms_fails_before_the_teacher_trains(tmp_path):
    recipe = tiny_recipe()  # its terms name logits.2, which a lean network does not offer
    with pytest.raises(ConfigError, match=r"student \(lean\) does not offer tap 'logits\.2'"):
        run_quickstart(tmp_path / "qs", recipe=recipe, student="lean", device="cpu", log=lambda _: None)
    assert not (tmp_path / "qs" / "runs" / "teacher").exists()


def test_the_synthetic_split_is_scored_below_the_networks_range_as_eval_scores_it(tmp_path):
    from stereodistill.experiments.quickstart import evaluation_sets, write_test_data

    recipe = tiny_recipe()
    recipe["test"]["max_disp"] = 24  # scenes that reach beyond the networks' 16 px
    roots = write_test_data(recipe, tmp_path, seed=0, factor=4)
    datasets = evaluation_sets(recipe, roots, max_disp=16)
    assert datasets["synthetic"].max_disp == 16 and datasets[motorcycle.NAME].max_disp == 16


def test_a_budget_scales_stages_in_absolute_steps_too(tmp_path):
    recipe = tiny_recipe()
    recipe["teacher"] = {**recipe["teacher"], "stages": [{"name": "a", "steps": 4}, {"name": "b", "steps": 2}]}
    del recipe["teacher"]["steps"]
    teacher = run_configs(recipe, tmp_path, seed=0, steps_scale=2.0)["teacher"]
    assert [s.steps for s in teacher.stages] == [8, 4] and teacher.total_steps == teacher.steps == 12
    recipe["teacher"]["steps"] = 700  # not what the stages add up to: which would it train?
    with pytest.raises(ConfigError, match=r"^quickstart recipe \(teacher\): steps is 700, but the stages"):
        run_configs(recipe, tmp_path, seed=0)
    recipe["teacher"]["steps"] = 6
    recipe["teacher"]["stages"][1] = {"name": "b", "fraction": 0.5}  # one of each: the run config says so
    with pytest.raises(ConfigError, match=r"use 'fraction' for every stage or 'steps' for every stage"):
        run_configs(recipe, tmp_path, seed=0)

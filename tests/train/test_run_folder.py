"""One run per folder: refused reuse, --force, resume with a changed config, no repeated rows."""

import csv
import io
import json
import os

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from stereodistill.checkpoint import save_model
from stereodistill.cli.main import main
from stereodistill.errors import ConfigError, DataError
from stereodistill.models import build_model
from stereodistill.train.run_folder import config_changes, is_structural
from stereodistill.train.trainer import Trainer

from .test_trainer import TINY, config


def rows(folder):
    return list(csv.reader(io.StringIO((folder / "scalars.csv").read_text())))[1:]


def test_a_new_run_into_a_used_folder_is_refused_and_force_starts_over(tmp_path):
    out = tmp_path / "run"
    Trainer(config(out, steps=2, checkpoint_every=1), distill=False).run()
    once = rows(out)
    assert (out / "checkpoints" / "step-0000002.json").is_file()
    with pytest.raises(ConfigError, match=r"holds a run already: --resume to continue it, or --force to start over"):
        Trainer(config(out, steps=1), distill=False)
    Trainer(config(out, steps=1), distill=False, force=True).run()
    assert len(rows(out)) < len(once) and {row[0] for row in rows(out)} == {"1"}
    assert not (out / "checkpoints" / "step-0000002.json").exists()  # the old run's checkpoints are gone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.old-")]


def test_resume_refuses_a_changed_network_and_lists_other_changes_until_allowed(tmp_path):
    out = tmp_path / "run"
    assert Trainer(config(out, steps=4), distill=False).run(stop_at=2)["stopped"]
    with pytest.raises(ConfigError, match=r"changes what the checkpoint holds \(model.max_disp: 16 → 24\)"):
        Trainer(config(out, steps=4, model={**TINY["model"], "max_disp": 24}), distill=False, resume=True)
    changed = {**TINY["optim"], "lr": 5e-4}
    with pytest.raises(ConfigError, match=r"differs from the run's \(optim.lr: 0.001 → 0.0005\); add --allow-changes"):
        Trainer(config(out, steps=4, optim=changed), distill=False, resume=True)
    resumed = Trainer(config(out, steps=4, optim=changed), distill=False, resume=True, allow_changes=True)
    resumed.run(stop_at=3)
    text = (out / "config.yaml").read_text()
    assert text.startswith("# history: resumed at step 2 with optim.lr: 0.001 → 0.0005\n")
    assert yaml.safe_load(text)["optim"]["lr"] == 5e-4
    # The next resume keeps the history (and, the config unchanged, needs no flag).
    Trainer(config(out, steps=4, optim=changed), distill=False, resume=True).run()
    assert (out / "config.yaml").read_text().count("# history:") == 1


def test_a_resumed_run_does_not_repeat_the_rows_logged_after_its_checkpoint(tmp_path):
    out = tmp_path / "run"
    Trainer(config(out, steps=4), distill=False).run(stop_at=2)
    with (out / "scalars.csv").open("a", newline="") as handle:  # a run killed after its checkpoint
        csv.writer(handle).writerow([3, "main", "supervised", 9.9])
    Trainer(config(out, steps=4), distill=False, resume=True).run()
    keys = [(row[0], row[2]) for row in rows(out)]
    assert len(keys) == len(set(keys)) and ("3", "supervised") in keys and ("4", "supervised") in keys
    assert "9.9" not in {row[3] for row in rows(out)}


def test_config_changes_key_terms_by_name_and_know_what_is_structural():
    term = {"name": "kl", "student": "logits.0", "teacher": "logits.2", "loss": "kl", "weight": 1.0}
    saved = {"optim": {"lr": 1e-3}, "distill": {"terms": [term, {**term, "name": "feat"}]}}
    given = {"optim": {"lr": 1e-3}, "distill": {"terms": [{**term, "name": "feat"}, {**term, "weight": 2.0}]}}
    assert config_changes(saved, given) == {"distill.terms.kl.weight": (1.0, 2.0)}  # reordering is no change
    assert not is_structural("distill.terms.kl.weight") and not is_structural("optim.lr")
    assert is_structural("distill.terms.kl.adapter") and is_structural("model.options.width")


def test_the_cli_refuses_a_used_folder_and_contradictory_flags(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**TINY, "steps": 1, "output": str(tmp_path / "out")}))
    assert main(["train", str(path)]) == 0
    capsys.readouterr()
    assert main(["train", str(path)]) == 2
    assert "holds a run already: --resume to continue it, or --force" in capsys.readouterr().err
    assert main(["train", str(path), "--force", "--resume"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert main(["train", str(path), "--force", "steps=2"]) == 0  # overrides may follow the flags
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())["steps"] == 2
    capsys.readouterr()
    assert main(["train", str(path), "--resume", "steps=3", "--allow-changes"]) == 0
    assert "resumed at step 2 with steps: 2 → 3" in (tmp_path / "out" / "config.yaml").read_text()
    assert "trained dsnet for step 3 in" in capsys.readouterr().out  # this call's steps, not the run's
    assert main(["train", str(path), "--resume", "model.arch=lean"]) == 2
    assert "changes what the checkpoint holds (model.arch: 'dsnet' → 'lean')" in capsys.readouterr().err


def test_force_never_clears_a_folder_holding_what_the_run_reads(tmp_path, capsys):
    save_model(tmp_path / "out" / "start", build_model("dsnet", max_disp=16))  # the weights it starts from
    (tmp_path / "out" / "scalars.csv").write_text("step,stage,name,value\n")  # a previous run's
    model = {**TINY["model"], "init": str(tmp_path / "out" / "start")}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**TINY, "model": model, "output": str(tmp_path / "out")}))
    assert main(["train", str(tmp_path / "run.yaml"), "--force"]) == 2
    assert "start.safetensors, which this run reads" in capsys.readouterr().err
    assert (tmp_path / "out" / "start.safetensors").is_file() and (tmp_path / "out" / "scalars.csv").is_file()


def test_force_clears_only_a_runs_folder_and_never_the_one_you_are_in(tmp_path, capsys, monkeypatch):
    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "notes.txt").write_text("a user's own files")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**TINY, "steps": 1, "output": str(mine)}))
    for flags in ([], ["--force"]):
        assert main(["train", str(tmp_path / "run.yaml"), *flags]) == 2
        err = capsys.readouterr().err
        assert "holds files that are not a stereodistill run's (data, notes.txt): --force clears only" in err
    assert sorted(p.name for p in mine.iterdir()) == ["data", "notes.txt"]
    # Names a user gives their own files too do not make a run's folder: their config, weights, checkpoints.
    (mine / "config.yaml").write_text(yaml.safe_dump({**TINY, "output": str(mine)}))
    (mine / "checkpoints").mkdir()
    (mine / "model.safetensors").write_bytes(b"weights of another project")
    assert main(["train", str(mine / "config.yaml"), "--force"]) == 2
    assert "not a stereodistill run's (checkpoints, config.yaml, data …)" in capsys.readouterr().err
    (tmp_path / "link").symlink_to(tmp_path / "run")
    assert main(["train", str(tmp_path / "run.yaml"), f"output={tmp_path / 'run'}"]) == 0
    assert main(["train", str(tmp_path / "run.yaml"), f"output={tmp_path / 'link'}", "--force"]) == 2
    assert f"is a link to {tmp_path / 'run'}: give that folder itself" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path / "run")
    assert main(["train", str(tmp_path / "run.yaml"), "output=.", "--force"]) == 2
    assert "--force would delete the folder you are working in" in capsys.readouterr().err
    assert (tmp_path / "run" / "model.safetensors").is_file() and not list(tmp_path.glob("*.old-*"))


def test_model_init_that_does_not_fit_names_its_weights_file(tmp_path):
    save_model(tmp_path / "start", build_model("lean-xs", max_disp=16))  # another network
    model = {**TINY["model"], "init": str(tmp_path / "start")}
    with pytest.raises(ConfigError, match=r"start: a lean-xs checkpoint, but model.arch is dsnet"):
        Trainer(config(tmp_path / "run", model=model), distill=False)
    weights = load_file(tmp_path / "start.safetensors")
    save_file({key: weights[key] for key in list(weights)[1:]}, tmp_path / "start.safetensors")  # one tensor lost
    with pytest.raises(DataError, match="weights do not fit architecture 'lean-xs'") as info:
        Trainer(config(tmp_path / "run", model={**model, "arch": "lean-xs"}), distill=False)
    assert info.value.path == tmp_path / "start.safetensors"
    save_model(tmp_path / "same", build_model("dsnet", max_disp=16))
    trainer = Trainer(config(tmp_path / "run2", model={**model, "init": str(tmp_path / "same")}), distill=False)
    assert torch.equal(
        trainer.student.state_dict()["classif0.0.0.weight"],
        load_file(tmp_path / "same.safetensors")["classif0.0.0.weight"],
    )


def _drop(prefix):
    def damage(files):
        tensors = load_file(files["state"])
        save_file({k: v for k, v in tensors.items() if not k.startswith(prefix)}, files["state"])

    return damage


def _drop_everywhere(suffix):
    def damage(files):
        save_file({k: v for k, v in load_file(files["state"]).items() if not k.endswith(suffix)}, files["state"])

    return damage


def _shrink_moments(files):
    tensors = load_file(files["state"])
    save_file(
        {k: v.reshape(-1)[:1] if k.startswith("optim.") and v.dim() else v for k, v in tensors.items()}, files["state"]
    )


def _add(name, tensor):
    def damage(files):
        save_file({**load_file(files["state"]), name: tensor}, files["state"])

    return damage


def _as_integers(name):
    def damage(files):
        tensors = load_file(files["state"])
        save_file({**tensors, name: tensors[name].long()}, files["state"])

    return damage


def _swap_first_ids(training):
    ids = training["optimizer"]["param_groups"][0]["params"]
    ids[0], ids[1] = ids[1], ids[0]


def _edit_json(change):
    def damage(files):
        record = json.loads(files["json"].read_text())
        change(record["training"])
        files["json"].write_text(json.dumps(record))

    return damage


@pytest.mark.parametrize(
    ("damage", "named", "expected"),
    [
        (_drop("rng."), "state", "holds no random state ('rng.torch')"),
        (
            _shrink_moments,
            "state",
            "moments do not fit this run's network (optim.0.exp_avg is (1,), where (32, 3, 3, 3) is expected)",
        ),
        (_drop("optim.0.exp_avg_sq"), "state", "does not fit this run's optimiser (no optim.0.exp_avg_sq)"),
        (
            _add("optim.0.exp_avg", torch.tensor(1.0)),
            "state",
            "(optim.0.exp_avg is (), where (32, 3, 3, 3) is expected)",
        ),
        (_add("optim.².exp_avg", torch.zeros(1)), "state", "'optim.².exp_avg' names no parameter"),
        (_add("optim.9999.exp_avg", torch.zeros(1)), "state", "'optim.9999.exp_avg' names no parameter"),
        (_add("rng.torch", torch.zeros(10)), "state", "its random state 'rng.torch' is damaged"),
        (
            _add("extra.gate", torch.zeros(3)),
            "state",
            "do not fit this run's adapters and loss weights: 1 unexpected: gate",
        ),
        (
            _edit_json(lambda t: t.pop("optimizer")),
            "json",
            "optimiser or random state is damaged (missing 'optimizer')",
        ),
        (_edit_json(lambda t: t["optimizer"].update(scalars=[])), "json", "optimiser or random state is damaged"),
        (_edit_json(lambda t: t.update(step="two")), "json", "training.step must be an integer ≥ 0, got 'two'"),
        (_edit_json(lambda t: t.update(step=-5)), "json", "training.step must be an integer ≥ 0, got -5"),
        (_edit_json(_swap_first_ids), "json", "param_groups list parameter ids [1, 0, 2"),
        (_drop_everywhere(".exp_avg_sq"), "state", "does not fit this run's optimiser (no optim.0.exp_avg_sq"),
        (_as_integers("optim.0.exp_avg"), "state", "'optim.0.exp_avg' holds torch.int64, where the optimiser"),
        (_edit_json(lambda t: t["optimizer"]["scalars"].update({"0": {"step": 5}})), "json", "scalars.0 holds step"),
        (_edit_json(lambda t: t["optimizer"]["scalars"].update({"-1": {"junk": 1}})), "json", "scalars.-1 holds junk"),
        (_edit_json(lambda t: t["rng"]["numpy"].__setitem__(2, 9999)), "json", "rng.numpy is not an MT19937 state"),
        (_edit_json(lambda t: t["rng"]["python"].__setitem__(2, "x")), "json", "rng.python's cached Gaussian is 'x'"),
        (_edit_json(lambda t: t["rng"]["numpy"][1].__setitem__(0, -1)), "json", "random state is damaged"),
        (lambda f: save_file(dict(list(load_file(f["model"]).items())[1:]), f["model"]), "model", "1 missing"),
    ],
)
def test_resume_from_a_damaged_checkpoint_names_the_file_before_any_step(tmp_path, damage, named, expected):
    out = tmp_path / "run"
    Trainer(config(out, steps=4), distill=False).run(stop_at=2)
    base = out / "checkpoints" / "step-0000002"
    files = {"json": base.with_suffix(".json"), "model": base.with_suffix(".safetensors")}
    files["state"] = out / "checkpoints" / "step-0000002.state.safetensors"
    damage(files)
    before = rows(out)
    with pytest.raises(DataError, match="step-0000002") as info:
        Trainer(config(out, steps=4), distill=False, resume=True).run()
    assert info.value.path == files[named] and expected in str(info.value)
    assert rows(out) == before  # nothing trained or logged on a state that does not fit


def test_a_resume_with_allowed_optimiser_changes_trains_with_them(tmp_path):
    out = tmp_path / "run"
    Trainer(config(out, steps=4), distill=False).run(stop_at=2)
    changed = {**TINY["optim"], "weight_decay": 0.25, "betas": [0.5, 0.75]}
    resumed = Trainer(config(out, steps=4, optim=changed), distill=False, resume=True, allow_changes=True)
    resumed.run(stop_at=3)
    group = resumed.optimizer.param_groups[0]
    assert group["weight_decay"] == 0.25 and tuple(group["betas"]) == (0.5, 0.75)  # not the checkpoint's


def test_resume_refuses_a_checkpoint_beyond_the_runs_steps(tmp_path, capsys):
    out = tmp_path / "run"
    Trainer(config(out, steps=4, checkpoint_every=1), distill=False).run(stop_at=3)
    with pytest.raises(ConfigError, match=r"step-0000003.json, is at step 3, beyond this run's 2 steps; resume with"):
        Trainer(config(out, steps=2), distill=False, resume=True, allow_changes=True)
    assert not (out / "model.safetensors").exists()
    Trainer(config(out, steps=3), distill=False, resume=True, allow_changes=True).run()  # at the end: the model
    assert (out / "model.safetensors").is_file()


def test_resume_with_a_damaged_config_or_log_names_it(tmp_path):
    out = tmp_path / "run"
    Trainer(config(out, steps=4), distill=False).run(stop_at=2)
    saved = (out / "config.yaml").read_bytes()
    (out / "config.yaml").write_text("x: [")
    with pytest.raises(DataError, match=r"config.yaml: is damaged: not valid YAML .*; --force to start the run over"):
        Trainer(config(out, steps=4), distill=False, resume=True)
    (out / "config.yaml").write_bytes(saved)
    (out / "scalars.csv").write_bytes(b"\xff\xfe step\n")
    with pytest.raises(DataError, match=r"scalars.csv: is damaged .*; --force to start the run over"):
        Trainer(config(out, steps=4), distill=False, resume=True)


def test_resume_takes_a_term_weight_schedule_or_mask_change_but_not_a_term_added_or_removed(tmp_path):
    from stereodistill.train.run_folder import check_resume

    term = {"name": "kl", "student": "logits.0", "teacher": "logits.0", "loss": "kl"}
    saved = {"distill": {"terms": [{**term, "weight": {"type": "linear", "end": 1.0, "steps": 4}}]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    for change in ({"weight": 1.0}, {"mask": "confidence"}, {"mask": "confidence", "mask_threshold": 0.3}):
        given = {"distill": {"terms": [{**term, **change}]}}
        with pytest.raises(ConfigError, match=r"differs from the run's .*; add --allow-changes"):
            check_resume(tmp_path, given, allow_changes=False)
        assert check_resume(tmp_path, given, allow_changes=True)
    second = {**term, "name": "kl2"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"distill": {"terms": [term, second]}}))
    with pytest.raises(ConfigError, match=r"distill.terms \(order\): \['kl', 'kl2'\] → \['kl2', 'kl'\]"):
        check_resume(tmp_path, {"distill": {"terms": [second, term]}}, allow_changes=True)  # weighted by position
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    other = {**term, "name": "kl2"}
    with pytest.raises(
        ConfigError, match=r"holds \(distill.terms.kl: 'a term' → None; distill.terms.kl2: None → 'a term'\); start"
    ):
        check_resume(tmp_path, {"distill": {"terms": [other]}}, allow_changes=True)


def test_a_runs_folder_is_known_from_its_first_moment_and_a_copied_recipe_is_not_a_run(tmp_path):
    from stereodistill.train.run_folder import RECIPE_MARK, holds_a_run

    out = tmp_path / "run"
    Trainer(config(out, steps=20), distill=False)  # killed before its first log row (SIGTERM, a time limit)
    assert (out / "scalars.csv").read_text().startswith("step,stage,name,value")
    assert holds_a_run(out)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "recipe.yaml").write_text(yaml.safe_dump({"common": {}, "teacher": {}, "student": {}}))
    assert not holds_a_run(mine)  # the README tells users to copy the recipe: a copy is theirs
    (mine / "recipe.yaml").write_text(RECIPE_MARK + "\n" + (mine / "recipe.yaml").read_text())
    assert holds_a_run(mine)  # a quickstart stopped after its first file
    (mine / "notes.txt").write_text("mine")  # a run's marked recipe, copied beside the user's own files
    (mine / "photos").mkdir()
    assert not holds_a_run(mine)  # --force must not clear them


def test_model_init_made_with_other_options_is_refused_and_another_range_is_noted(tmp_path, capsys):
    save_model(tmp_path / "start", build_model("dsnet", max_disp=16, attention=False))
    model = {**TINY["model"], "init": str(tmp_path / "start")}
    with pytest.raises(ConfigError) as info:  # the weights fit, and would train as another network
        Trainer(config(tmp_path / "run", model=model), distill=False)
    assert str(info.value) == (
        f"model.init {tmp_path / 'start'}: start.json says its network was made with attention: False, this run's "
        "has attention: True; set model.options.attention=false to train the same network"
    )
    options = {"attention": False, "hourglass_channels": 16}  # the second is the default: the same network
    Trainer(config(tmp_path / "run", model={**model, "options": options}), distill=False)
    save_model(tmp_path / "narrow", build_model("dsnet", max_disp=16))
    Trainer(config(tmp_path / "wide", model={**model, "max_disp": 32, "init": str(tmp_path / "narrow")}), distill=False)
    assert (
        f"model.init {tmp_path / 'narrow'}: weights of a network of range 16, trained here at 32"
        in capsys.readouterr().err
    )


def test_resuming_a_finished_run_does_nothing_and_one_stopped_before_its_model_validates_once(tmp_path, capsys):
    val = {"dataset": "synthetic", "pairs": 1, "size": [32, 64], "max_disp": 16, "split": "test"}
    out = tmp_path / "run"
    Trainer(config(out, steps=2, data={**TINY["data"], "val": val}), distill=False).run()
    finished, model = rows(out), (out / "model.safetensors").read_bytes()
    again = Trainer(config(out, steps=2, data={**TINY["data"], "val": val}), distill=False, resume=True).run()
    assert again["step"] == 2 and again["metrics"]["epe"] > 0 and again["finished"]  # its own result, nothing redone
    assert rows(out) == finished and (out / "model.safetensors").read_bytes() == model
    assert "the run is finished (step 2 of 2, its model written): nothing to resume" in capsys.readouterr().err
    changed = config(out, steps=2, precise_bn=2, data={**TINY["data"], "val": val})
    Trainer(changed, distill=False, resume=True, allow_changes=True).run()  # accepted, but nothing runs under it
    assert "not applied, as nothing trained: precise_bn: 0 → 2" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == model
    for name in ("model.json", "model.safetensors"):  # as if killed between its last checkpoint and its model
        (out / name).unlink()
    Trainer(config(out, steps=2, data={**TINY["data"], "val": val}), distill=False, resume=True).run()
    assert rows(out) == finished and (out / "model.json").is_file()  # the final validation's rows once


def test_a_run_stopped_before_its_first_checkpoint_points_to_force_not_resume(tmp_path):
    out = tmp_path / "run"
    Trainer(config(out, steps=1), distill=False)  # its scalars.csv is on disk: a run's folder, with no checkpoint
    with pytest.raises(
        ConfigError, match=r"it stopped before its first checkpoint, so there is nothing to resume: --force"
    ):
        Trainer(config(out, steps=1), distill=False)


def test_a_run_recorded_before_the_validation_default_changed_resumes_on_its_own_split(tmp_path):
    val = {"dataset": "synthetic", "pairs": 1, "size": [32, 64], "max_disp": 16}  # no split: now its test pairs
    out = tmp_path / "run"
    Trainer(config(out, steps=4, data={**TINY["data"], "val": val}), distill=False).run(stop_at=2)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["val"]["split"] == "test"
    saved["data"]["val"]["split"] = "train"  # as a run written before this default recorded it
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    resumed = Trainer(config(out, steps=4, data={**TINY["data"], "val": val}), distill=False, resume=True)
    assert resumed.config.data.val.split == "train"  # the pairs it validated on so far, not refused as a change
    other = {**val, "split": "test"}  # given: a change like any other
    with pytest.raises(ConfigError, match=r"data.val.split: 'train' → 'test'"):
        Trainer(config(out, steps=4, data={**TINY["data"], "val": other}), distill=False, resume=True)


def test_model_init_of_a_preset_spelled_out_is_the_same_network_and_a_range_its_weights_follow_is_named(tmp_path):
    save_model(tmp_path / "noatt", build_model("dsnet-noatt", max_disp=16))
    spelled = {**TINY["model"], "options": {"attention": False}, "init": str(tmp_path / "noatt")}
    Trainer(config(tmp_path / "a", model=spelled), distill=False)  # dsnet-noatt is dsnet without attention
    save_model(tmp_path / "lean16", build_model("lean-xs", max_disp=16))
    wider = {"arch": "lean-xs", "max_disp": 32, "init": str(tmp_path / "lean16")}
    with pytest.raises(ConfigError, match=r"made at max disparity 16, and lean-xs's weights follow its range; set mod"):
        Trainer(config(tmp_path / "b", model=wider), distill=False)


def test_a_final_validation_that_fails_leaves_the_trained_checkpoint_to_resume_from(tmp_path):
    import numpy as np

    from stereodistill.data.formats import write_image, write_pfm

    rng = np.random.default_rng(0)
    for name in ("l.png", "r.png"):
        write_image(tmp_path / name, rng.random((32, 64, 3)))
    write_pfm(tmp_path / "d.pfm", np.full((32, 64), 5.0, np.float32))
    (tmp_path / "pairs.csv").write_text("left,right,disp\nl.png,r.png,d.pfm\n")
    whole = (tmp_path / "l.png").read_bytes()
    (tmp_path / "l.png").write_bytes(whole[:80])  # its header intact: the checks before training pass it
    val = {"dataset": "pairs", "root": str(tmp_path / "pairs.csv")}
    out = tmp_path / "run"
    with pytest.raises(DataError, match=r"l\.png: not a readable image"):
        Trainer(config(out, steps=2, data={**TINY["data"], "val": val}), distill=False).run()
    assert (out / "checkpoints" / "step-0000002.json").is_file() and not (out / "model.json").exists()
    (tmp_path / "l.png").write_bytes(whole)  # mended: the resume validates and writes the model, no step trained
    result = Trainer(config(out, steps=2, data={**TINY["data"], "val": val}), distill=False, resume=True).run()
    assert result["step"] == 2 and (out / "model.json").is_file()


def test_resume_compares_a_weighting_as_it_runs_not_as_it_is_written(tmp_path):
    from stereodistill.train.run_folder import check_resume

    term = {"name": "kl", "student": "logits.0", "teacher": "logits.0", "loss": "kl"}
    for saved, given in (
        (None, {"type": "fixed"}),
        ({"type": "fixed"}, None),
        ({"type": "dwa"}, {"type": "dwa", "temperature": 2.0}),
        ({"type": "uncertainty", "clamp": 4}, {"type": "uncertainty"}),
    ):
        (tmp_path / "config.yaml").write_text(yaml.safe_dump({"distill": {"terms": [term], "weighting": saved}}))
        assert check_resume(tmp_path, {"distill": {"terms": [term], "weighting": given}}, allow_changes=False) == {}
    changed = {"distill": {"terms": [term], "weighting": {"type": "uncertainty", "clamp": 3.0}}}
    with pytest.raises(ConfigError, match=r"distill.weighting.clamp: 4.0 → 3.0\); add --allow-changes"):
        check_resume(tmp_path, changed, allow_changes=False)
    with pytest.raises(ConfigError, match=r"holds \(distill.weighting.type: 'uncertainty' → 'dwa'"):
        check_resume(tmp_path, {"distill": {"terms": [term], "weighting": {"type": "dwa"}}}, allow_changes=True)


@pytest.mark.skipif(os.name == "nt", reason="advisory folder locks are POSIX")
def test_a_folder_a_running_process_holds_is_neither_resumed_nor_cleared_by_another(tmp_path, capsys):
    import subprocess
    import sys

    from stereodistill.train import run_folder

    out = tmp_path / "run"
    Trainer(config(out, steps=2), distill=False).run()
    assert not run_folder.claimed(out)  # a run that has ended lets go of its folder
    holder = subprocess.Popen(  # another process training there: it holds the folder until it ends
        [
            sys.executable,
            "-c",
            f"from stereodistill.train.run_folder import claim; from pathlib import Path; "
            f"claim(Path({str(out)!r})); print('held', flush=True); import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in (["--resume", "steps=3", "--allow-changes"], ["--force"]):
            assert main(["train", str(out / "config.yaml"), f"output={out}", *extra]) == 2
            assert "is in use by another stereodistill process that is still running there" in capsys.readouterr().err
        assert (out / "model.safetensors").is_file()  # --force cleared nothing
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", str(out / "config.yaml"), f"output={out}", "--resume", "steps=3", "--allow-changes"]) == 0


def test_a_run_recorded_with_the_default_steps_beside_absolute_stages_resumes_unchanged(tmp_path):
    from stereodistill.train.run_folder import check_resume

    stages = [{"name": "a", "steps": 2}, {"name": "b", "steps": 1}]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"steps": 1000, "stages": stages}))  # as recorded before
    assert check_resume(tmp_path, {"steps": 3, "stages": stages}, allow_changes=False) == {}

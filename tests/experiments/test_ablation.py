"""The ablation runner on a tiny grid: expansion by name, resumability, failures, statistics, teacher
cells, benchmarks and budgets; and the shipped ablation files."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import signal
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from stereodistill.checkpoint import save_model
from stereodistill.config import to_dict
from stereodistill.errors import ConfigError, DataError
from stereodistill.experiments.ablation import expand, load_ablation, output_folder, run_ablation
from stereodistill.experiments.ablation_report import ci95, summarise, write_reports
from stereodistill.experiments.ablation_runs import slot_devices
from stereodistill.models import build_model
from stereodistill.runtime import exit_with_parent
from stereodistill.train.config import DatasetConfig
from stereodistill.train.data import build as build_dataset

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

TINY = {"arch": "dsnet-noatt", "max_disp": 16, "options": {"hourglass_channels": 8}}


@pytest.fixture
def ablation_file(tmp_path):
    teacher = save_model(tmp_path / "teacher", build_model("dsnet-noatt", max_disp=16, hourglass_channels=8))
    base = {
        "steps": 50,
        "model": TINY,
        "teacher": {"checkpoint": str(teacher.with_suffix(""))},
        "data": {
            "train": {"dataset": "synthetic", "pairs": 4, "size": [32, 64], "max_disp": 16},
            "crop": [32, 64],
            "batch_size": 2,
        },
        "optim": {"name": "adam", "lr": 1e-3, "schedule": "constant"},
        "distill": {
            "terms": [
                {"name": "feat", "student": "feat.left.s4", "teacher": "feat.left.s4", "loss": "cosine"},
                {"name": "kl", "student": "logits.2", "teacher": "logits.2", "loss": "kl", "params": {"tau": 2.0}},
            ]
        },
        "stages": [{"name": "a", "fraction": 0.5, "terms": ["feat"]}, {"name": "b", "fraction": 0.5}],
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    ablation = {
        "name": "tiny",
        "base": "base.yaml",
        "seeds": [0, 1],
        "steps": 2,
        "parallel": 2,
        "baseline": "no_kd",
        "fixed": {"no_kd": {"terms": []}},
        "axes": {
            "points": {"feat": {"terms": ["feat"]}, "all": {}},
            "tau": {"t1": {"distill.terms.kl.params.tau": 1.0}},
        },
        "eval": {"synthetic": {"dataset": "synthetic", "pairs": 2, "size": [32, 64], "max_disp": 16, "split": "test"}},
    }
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(ablation, sort_keys=False))
    return path


def test_expansion_addresses_terms_by_name(ablation_file):
    config, root = load_ablation(ablation_file)
    cells = {c.name: c for c in expand(config, root)}
    assert list(cells) == ["no_kd", "points=feat,tau=t1", "points=all,tau=t1"]
    assert not cells["no_kd"].distill and "teacher" not in cells["no_kd"].config
    feat = cells["points=feat,tau=t1"].config  # tau=t1 does not apply: this cell has no kl term
    assert [t["name"] for t in feat["distill"]["terms"]] == ["feat"]
    assert feat["stages"][1].get("terms") is None and feat["stages"][0]["terms"] == ["feat"]
    both = cells["points=all,tau=t1"].config
    assert next(t for t in both["distill"]["terms"] if t["name"] == "kl")["params"]["tau"] == 1.0
    assert all(c.config["steps"] == 2 for c in cells.values())


def test_bad_choices_are_refused_before_anything_runs(ablation_file, tmp_path):
    config, root = load_ablation(ablation_file)
    config.axes["points"]["typo"] = {"terms": ["fetа"]}
    with pytest.raises(ConfigError, match="not in the base"):
        expand(config, root)
    config, root = load_ablation(ablation_file)
    config.axes["tau"]["t1"] = {"distill.terms.nope.params.tau": 1.0}
    with pytest.raises(ConfigError, match="no term named 'nope'"):
        expand(config, root)
    config, root = load_ablation(ablation_file)
    config.baseline = "nobody"
    with pytest.raises(ConfigError, match="baseline 'nobody' is not a cell"):
        expand(config, root)
    config, root = load_ablation(ablation_file)
    config.compare = [("no_kd", "nobody")]
    with pytest.raises(ConfigError, match=r"compare \['no_kd', 'nobody'\]: 'nobody' is not a cell"):
        expand(config, root)
    config, root = load_ablation(ablation_file)
    config.axes["tau"]["t1"] = {"optim.lr": "fast"}
    with pytest.raises(ConfigError, match="lr"):
        expand(config, root)


def test_runs_resumes_and_records_failures(ablation_file, tmp_path):
    data = yaml.safe_load(ablation_file.read_text())
    data["fixed"]["broken"] = {"teacher.checkpoint": str(tmp_path / "missing")}  # fails inside its run
    ablation_file.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    lines: list[str] = []
    summary = run_ablation(ablation_file, out, log=lines.append)
    assert "4 cells × 2 seeds: 0 finished before, 8 to run" in lines[0]
    table = {row["cell"]: row for row in summary["tables"]["synthetic"]}
    assert table["broken"]["n"] == 0 and table["broken"]["rank"] is None
    assert {f["cell"] for f in summary["failures"]} == {"broken"} and len(summary["failures"]) == 2
    assert "missing" in summary["failures"][0]["error"]
    for name in ("no_kd", "points=feat,tau=t1", "points=all,tau=t1"):
        row = table[name]
        assert row["n"] == 2 and row["seeds"] == [0, 1]
        assert row["epe"]["mean"] == pytest.approx(sum(row["epe"]["values"]) / 2)
        assert math.isfinite(row["epe"]["ci95"])
        paired = [a - b for a, b in zip(row["epe"]["values"], table["no_kd"]["epe"]["values"], strict=True)]
        assert row["epe_vs_baseline"]["values"] == pytest.approx(paired)
    assert table["no_kd"]["epe_vs_baseline"]["mean"] == 0.0
    assert "EPE − no_kd, paired" in (out / "ablation.md").read_text()
    ranks = [row["rank"] for row in summary["tables"]["synthetic"] if row["n"]]
    assert ranks == [1, 2, 3]
    assert (out / "ablation.md").read_text().count("\n| ") >= 4
    assert "<svg" in (out / "ablation.html").read_text()
    assert json.loads((out / "ablation.json").read_text())["name"] == "tiny"
    first = (out / "cells" / "no_kd" / "seed0" / "result.json").stat().st_mtime_ns

    lines.clear()
    again = run_ablation(ablation_file, out, log=lines.append, report_only=True)  # runs nothing
    assert json.dumps(again["tables"]) == json.dumps(summary["tables"])
    assert not any("to run" in line for line in lines)
    with pytest.raises(ConfigError, match=r"--report-only: .*typo does not exist: no run of this ablation"):
        run_ablation(ablation_file, out.parent / "typo", log=lines.append, report_only=True)
    assert not (out.parent / "typo").exists()

    lines.clear()
    run_ablation(ablation_file, out, log=lines.append)  # resumed: only the failed cell runs again
    assert "6 finished before, 2 to run" in lines[0]
    assert (out / "cells" / "no_kd" / "seed0" / "result.json").stat().st_mtime_ns == first


def test_ci95_uses_student_t_for_every_sample_size():
    assert math.isnan(ci95([1.0]))
    assert ci95([1.0, 3.0]) == pytest.approx(12.706, abs=1e-3)  # t(0.975, 1) · stdev √2 / √2
    # 12 seeds: t(0.975, 11) = 2.201, not the normal 1.96.
    values = [float(v % 3) for v in range(12)]
    assert ci95(values) == pytest.approx(2.201 * statistics.stdev(values) / math.sqrt(12), abs=1e-3)


def test_paired_comparisons_subtract_seed_by_seed_and_count_wins(tmp_path):
    def run(epe: float) -> dict:
        return {"synthetic": {"epe": epe, "d1": 0.1, "bad1": 0.2, "bad2": 0.1, "bad3": 0.05}}

    results = {
        "a": {0: run(1.0), 1: run(2.5), 2: run(1.5)},
        "b": {0: run(1.2), 1: run(2.0)},  # seed 2 did not finish: left out of the pair
    }
    summary = summarise("t", [0, 1, 2], 10, ["synthetic"], results, [], compare=[("a", "b")])
    (pair,) = summary["comparisons"]["synthetic"]
    assert pair["seeds"] == [0, 1] and pair["a_better"] == 1
    assert pair["epe_difference"]["values"] == pytest.approx([-0.2, 0.5])
    write_reports(summary, tmp_path)
    md = (tmp_path / "ablation.md").read_text()
    assert "| a − b | 2 | +0.150 [±" in md and "1 of 2 seeds" in md
    assert "Paired comparisons on synthetic" in (tmp_path / "ablation.html").read_text()


@pytest.fixture
def chain_file(ablation_file):
    """Two cells and one seed: a supervised teacher and a student distilled from its model; benched."""
    data = yaml.safe_load(ablation_file.read_text())
    data.update(
        seeds=[0],
        baseline="teacher",
        axes={},
        fixed={"teacher": {"terms": []}, "student": {"teacher_cell": "teacher", "terms": ["kl"]}},
        bench={"size": [32, 64], "repeats": 1, "warmup": 0, "reference": "student"},
        budgets={"long": {"steps": 3, "overrides": {"optim.lr": 5e-4}}},
    )
    ablation_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return ablation_file


def test_teacher_cells_benchmarks_and_changed_configs(chain_file, tmp_path):
    config, root = load_ablation(chain_file)
    cells = {c.name: c for c in expand(config, root)}
    assert cells["student"].teacher_cell == "teacher" and cells["student"].distill
    out = tmp_path / "out"
    lines: list[str] = []
    summary = run_ablation(chain_file, out, log=lines.append)
    assert not summary["failures"], summary["failures"]
    run = yaml.safe_load((out / "cells" / "student" / "seed0" / "run" / "config.yaml").read_text())
    assert run["teacher"]["checkpoint"] == str(out / "cells" / "teacher" / "seed0" / "run" / "model")
    bench = json.loads((out / "bench.json").read_text())
    assert set(bench["cells"]) == {"teacher", "student"} and bench["cells"]["student"]["arch"] == "dsnet-noatt"
    row = {r["cell"]: r for r in summary["tables"]["synthetic"]}["student"]
    assert row["bench"]["speedup_of_reference"] == 1.0 and row["bench"]["params"] > 0
    assert "student speed-up" in (out / "ablation.md").read_text()
    html = (out / "ablation.html").read_text()
    assert "after all training" in html and "Speed and accuracy on synthetic" in html
    assert json.loads((out / "ablation.json").read_text())["bench"]["reference"] == "student"
    # A cell retrained after the benchmark ran (stopped before its bench phase): its old speed is left out.
    timed = json.loads((out / "bench.json").read_text())
    timed["cells"]["student"]["fingerprint"] = "an-older-config"
    (out / "bench.json").write_text(json.dumps(timed))
    reported = run_ablation(chain_file, out, log=lines.append, report_only=True)
    rows = {r["cell"]: r for r in reported["tables"]["synthetic"]}
    assert "bench" not in rows["student"] and rows["teacher"]["bench"]["params"] > 0
    del timed["cells"]["teacher"]["gmacs"]
    (out / "bench.json").write_text(json.dumps(timed))
    with pytest.raises(DataError, match=r"bench.json: is damaged: no cells.teacher.gmacs; delete it"):
        run_ablation(chain_file, out, log=lines.append, report_only=True)
    del timed["cells"]["teacher"]
    (out / "bench.json").write_text(json.dumps(timed))

    # Only the evaluation changed: both runs are evaluated again, neither is retrained.
    weights = out / "cells" / "student" / "seed0" / "run" / "model.safetensors"
    trained = weights.stat().st_mtime_ns
    data = yaml.safe_load(chain_file.read_text())
    data["eval"]["synthetic"]["pairs"] = 3
    chain_file.write_text(yaml.safe_dump(data, sort_keys=False))
    lines.clear()
    again = run_ablation(chain_file, out, log=lines.append)
    assert "0 finished before, 2 to run" in lines[0] and "2 only need evaluating again" in lines[1]
    assert weights.stat().st_mtime_ns == trained
    assert {r["cell"]: r for r in again["tables"]["synthetic"]}["student"]["n"] == 1

    # A changed teacher reruns the teacher and, through its fingerprint, the student: nothing is kept.
    data = yaml.safe_load(chain_file.read_text())
    data["fixed"]["teacher"]["optim.lr"] = 2e-3
    chain_file.write_text(yaml.safe_dump(data, sort_keys=False))
    lines.clear()
    stale = run_ablation(chain_file, out, log=lines.append, report_only=True)  # reports none of them
    assert "left out 2 results or failures of another config" in lines[0]
    assert all(row["n"] == 0 for row in stale["tables"]["synthetic"])
    assert all(not row.get("bench") for row in stale["tables"]["synthetic"])  # not the old networks' speed
    lines.clear()
    run_ablation(chain_file, out, log=lines.append)
    log = "\n".join(lines)
    assert "0 finished before, 2 to run" in log and "0 only need evaluating again" in log
    assert weights.stat().st_mtime_ns != trained
    # The runs of the old config are set aside beside the new ones, not deleted.
    (aside,) = (out / "cells" / "student").glob("seed0.stale-*")
    assert f"set aside in {aside}" in log
    assert (aside / "run" / "model.safetensors").stat().st_mtime_ns == trained
    assert json.loads((aside / "result.json").read_text())["fingerprint"] == aside.name.split("-", 1)[1]


def test_a_classical_baseline_is_evaluated_and_benched_beside_the_cells(chain_file, tmp_path):
    data = yaml.safe_load(chain_file.read_text())
    data["baselines"] = ["sgbm"]
    chain_file.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    summary = run_ablation(chain_file, out, log=lambda line: None)
    rows = {r["cell"]: r for r in summary["tables"]["synthetic"]}
    assert rows["sgbm"]["n"] == 1 and rows["sgbm"]["epe"]["mean"] > 0
    assert "epe_vs_baseline" in rows["sgbm"]  # compared with the teacher cell like any row
    assert json.loads((out / "bench.json").read_text())["cells"]["sgbm"]["arch"] == "sgbm"
    result = json.loads((out / "baselines" / "sgbm" / "result.json").read_text())
    assert result["max_disp"] == 16 and result["metrics"]["synthetic"]["epe"] == rows["sgbm"]["epe"]["mean"]
    assert "sgbm: a classical method, not trained" in (out / "ablation.md").read_text()
    data["baselines"] = ["dsnet"]
    chain_file.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match="'dsnet' is not a classical network"):
        load_ablation(chain_file)


def test_a_baseline_that_cannot_run_is_refused_before_any_cell_trains(chain_file, tmp_path, monkeypatch):
    import sys

    from stereodistill.errors import InputError

    data = yaml.safe_load(chain_file.read_text())
    data["baselines"] = ["sgbm"]
    chain_file.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setitem(sys.modules, "cv2", None)  # as without OpenCV: importing it fails
    with pytest.raises(InputError, match="sgbm needs OpenCV"):
        run_ablation(chain_file, tmp_path / "out", log=lambda line: None)
    assert not (tmp_path / "out" / "cells").exists()


def test_a_failed_teacher_fails_its_students_without_running_them(chain_file, tmp_path):
    data = yaml.safe_load(chain_file.read_text())
    data["fixed"]["teacher"]["model.init"] = str(tmp_path / "no-such-init")  # fails inside the run
    data.pop("bench")
    chain_file.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    summary = run_ablation(chain_file, out, log=lambda line: None)
    errors = {f["cell"]: f["error"] for f in summary["failures"]}
    assert "no-such-init" in errors["teacher"]
    assert errors["student"] == "its teacher, cell 'teacher' seed 0, did not finish"
    assert not (out / "cells" / "student" / "seed0" / "run").exists()
    # Once the config is fixed, the old failures are not this config's: a report leaves them out.
    del data["fixed"]["teacher"]["model.init"]
    chain_file.write_text(yaml.safe_dump(data, sort_keys=False))
    lines: list[str] = []
    fixed = run_ablation(chain_file, out, log=lines.append, report_only=True)
    assert not fixed["failures"] and "left out 2 results or failures of another config" in lines[0]


def test_teacher_cells_are_checked(chain_file):
    data = yaml.safe_load(chain_file.read_text())
    for fixed, match in [
        ({"a": {"teacher_cell": "nobody"}}, "'nobody' is not another cell"),
        ({"a": {"teacher_cell": "b"}, "b": {"teacher_cell": "a"}}, "form a cycle"),
        ({"a": {"terms": []}, "b": {"terms": [], "teacher_cell": "a"}}, "has no terms"),
    ]:
        chain_file.write_text(yaml.safe_dump({**data, "fixed": fixed, "bench": None}, sort_keys=False))
        config, root = load_ablation(chain_file)
        with pytest.raises(ConfigError, match=match):
            expand(config, root)
    chain_file.write_text(yaml.safe_dump({**data, "bench": {"reference": "nobody"}}, sort_keys=False))
    config, root = load_ablation(chain_file)
    with pytest.raises(ConfigError, match="reference 'nobody' is not a cell"):
        expand(config, root)


def test_budgets_scale_steps_or_apply_a_named_scale(chain_file):
    config, root = load_ablation(chain_file, "long")
    cells = expand(config, root)
    assert all(c.config["steps"] == 3 and c.config["optim"]["lr"] == 5e-4 for c in cells)
    assert output_folder(config, "long").name == "tiny-budget-long"
    config, root = load_ablation(chain_file, "2.5")
    assert all(c.config["steps"] == 5 for c in expand(config, root))  # 2 steps × 2.5
    with pytest.raises(ConfigError, match="no budget 'huge' \\(named budgets: long"):
        load_ablation(chain_file, "huge")
    for bad in ("0", "nan", "inf", "1e308"):
        with pytest.raises(ConfigError, match="must be positive, finite and below"):
            load_ablation(chain_file, bad)
    data = yaml.safe_load(chain_file.read_text())
    for budget, problem in (({"steps": "1e4"}, "'steps' must be a whole number"), ([1], "must be a mapping")):
        chain_file.write_text(yaml.safe_dump({**data, "budgets": {"odd": budget}}, sort_keys=False))
        with pytest.raises(ConfigError, match=problem):
            load_ablation(chain_file, "odd")
    chain_file.write_text(yaml.safe_dump({**data, "output": "."}, sort_keys=False))
    assert output_folder(load_ablation(chain_file, "long")[0], "long").name == f"{Path.cwd().name}-budget-long"
    chain_file.write_text(yaml.safe_dump({**data, "output": "a/.."}, sort_keys=False))
    assert (
        output_folder(load_ablation(chain_file, "long")[0], "long")
        == Path.cwd().parent / f"{Path.cwd().name}-budget-long"
    )
    data["fixed"]["teacher"]["steps"] = 4  # a row's own budget wins over the file's 2 steps
    chain_file.write_text(yaml.safe_dump(data, sort_keys=False))
    config, root = load_ablation(chain_file, "2.5")
    assert {c.name: c.config["steps"] for c in expand(config, root)} == {"teacher": 10, "student": 5}
    config, root = load_ablation(chain_file, "long")  # 3 steps where the file has 2: own steps × 1.5
    assert {c.name: c.config["steps"] for c in expand(config, root)} == {"teacher": 6, "student": 3}
    del data["fixed"]["teacher"]["steps"]
    data["budgets"]["clash"] = {"overrides": {"optim.lr": 1e-4}}
    data["fixed"]["teacher"]["optim.lr"] = 2e-3
    chain_file.write_text(yaml.safe_dump(data, sort_keys=False))
    config, root = load_ablation(chain_file, "clash")
    with pytest.raises(ConfigError, match=r"also set optim\.lr"):
        expand(config, root)
    data["overrides"] = {"terms": []}
    chain_file.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match="cannot hold terms"):
        load_ablation(chain_file)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"seeds": [0, 0]}, "lists 0 more than once"),
        ({"steps": 0}, "'steps' must be at least 1"),
        ({"axes": {"points": {}}}, "axis 'points' has no choices"),
        ({"overrides": {"steps": 5}}, "not in 'overrides'"),
        ({"step_scale": 3}, "step_scale"),
        ({"fixed": {"a b": {"terms": []}, "a_b": {"terms": []}}, "axes": {}}, "would share one folder"),
        (
            {"fixed": {"f": {"terms": ["feat"], "distill.terms.kl.params.tau": 3.0}}, "axes": {}},
            r"distill.terms.kl.params.tau sets term 'kl', which its own 'terms' leaves out",
        ),
    ],
)
def test_specs_that_cannot_run_as_written_are_refused(ablation_file, change, problem):
    data = yaml.safe_load(ablation_file.read_text())
    ablation_file.write_text(yaml.safe_dump({**data, **change, "baseline": None}, sort_keys=False))
    with pytest.raises(ConfigError, match=problem):
        expand(*load_ablation(ablation_file))


@pytest.mark.parametrize("budget", [None, "gpu", "0.5"])
def test_the_proxy_benchmark_file_expands(budget):
    config, root = load_ablation(CONFIGS / "bench" / "proxy.yaml", budget)
    cells = {c.name: c for c in expand(config, root)}
    archs = {name: c.config["model"]["arch"] for name, c in cells.items()}
    assert archs == {
        "psmnet": "psmnet",
        "cfnet": "cfnet",
        "leastereo": "leastereo",
        "dsnet_teacher": "dsnet-teacher",
        "dsnet_scratch": "dsnet",
        "dsnet_distilled": "dsnet",
        "dsnet_teacher_3x": "dsnet-teacher",
        "dsnet_distilled_3x": "dsnet",
    }
    teachers = {n: c.teacher_cell for n, c in cells.items() if c.distill}
    assert teachers == {"dsnet_distilled": "dsnet_teacher", "dsnet_distilled_3x": "dsnet_teacher_3x"}
    # The two students differ only in their teacher; the longer-trained teacher has 3x every budget's steps.
    same = [{k: v for k, v in cells[n].config.items() if k != "teacher"} for n in teachers]
    assert same[0] == same[1]
    assert cells["dsnet_teacher_3x"].config["steps"] == 3 * cells["dsnet_teacher"].config["steps"]
    cells.pop("dsnet_teacher_3x")
    # Same budget and data for every network: the configs differ only in the network and the terms.
    plain = [{k: v for k, v in c.config.items() if k not in ("model", "distill", "teacher")} for c in cells.values()]
    assert all(p == plain[0] for p in plain)
    assert config.bench is not None and config.bench.reference == "dsnet_distilled_3x"


def test_the_shipped_ablation_files_expand():
    config, root = load_ablation(CONFIGS / "ablations" / "dsnet_points.yaml")
    cells = {c.name: c for c in expand(config, root)}
    assert not cells["no_kd"].distill and all(c.distill for n, c in cells.items() if n != "no_kd")
    assert len(config.seeds) >= 3
    config, root = load_ablation(CONFIGS / "ablations" / "dsnet_tau_width.yaml")
    cells = {c.name: c for c in expand(config, root)}
    assert len(cells) == 10
    cell = cells["width=hg8,tau=t4"].config
    assert cell["model"]["options"]["hourglass_channels"] == 8
    assert next(t for t in cell["distill"]["terms"] if t["name"] == "kl")["params"]["tau"] == 4.0


def test_motorcycle_is_a_dataset_in_memory():
    dataset = build_dataset(DatasetConfig(dataset="middlebury-motorcycle", max_disp=32))
    sample = dataset[0]
    assert len(dataset) == 1 and sample["left"].shape[0] == 3
    assert sample["valid"].any() and (sample["disp"][sample["valid"]] < 32).all()


def test_parallel_runs_take_the_gpus_in_turn(monkeypatch):
    import torch

    assert slot_devices("cpu", 3) == ["cpu"] * 3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert slot_devices("auto", 3) == ["cuda:0", "cuda:1", "cuda:0"]
    assert slot_devices("cuda:1", 2) == ["cuda:1", "cuda:1"]  # a device named outright is kept


def _orphan(parent: int, pid_file: str) -> None:
    exit_with_parent(parent, poll_s=0.05)
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)


def _short_lived_parent(pid_file: str) -> None:
    """Starts a run-like child, then dies at once, as a killed ablate would."""
    child = mp.get_context("spawn").Process(target=_orphan, args=(os.getpid(), pid_file))
    child.start()
    deadline = time.monotonic() + 60
    while not Path(pid_file).is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    os._exit(0)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan that exited waits for whoever adopted it to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.is_file() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_run_stops_when_the_ablation_is_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    parent = mp.get_context("spawn").Process(target=_short_lived_parent, args=(str(pid_file),))
    parent.start()
    parent.join(60)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not _running(child):
            return
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the orphaned run kept running after its ablation died")


def test_a_non_finite_metric_is_reported_not_fatal(tmp_path):
    def metrics(epe):
        return {"synthetic": {"epe": epe, "d1": 0.1, "bad1": 0.2, "bad2": 0.15, "bad3": 0.1}}

    results = {
        "good": {0: metrics(1.0), 1: metrics(1.2)},
        "half": {0: metrics(math.inf), 1: metrics(2.0)},
        "diverged": {0: metrics(math.nan), 1: metrics(math.inf)},
    }
    bench = {"reference": "good", "size": [8, 8], "device": "cpu", "threads": 2, "repeats": 1, "warmup": 0}
    speed = {"params": 1000, "gmacs": 1.0}
    bench["cells"] = {"good": {**speed, "latency_ms": 10.0}, "half": {**speed, "latency_ms": 30.0}}
    summary = summarise("t", [0, 1], 5, ["synthetic"], results, [], bench, baseline="good")
    rows = {r["cell"]: r for r in summary["tables"]["synthetic"]}
    assert rows["half"]["epe"]["mean"] == 2.0 and rows["half"]["epe"]["nonfinite"] == 1
    assert rows["half"]["epe_vs_baseline"]["mean"] == pytest.approx(0.8)
    assert rows["diverged"]["rank"] is None and [rows["good"]["rank"], rows["half"]["rank"]] == [1, 2]
    assert rows["half"]["bench"]["speedup_of_reference"] == 3.0  # good is 3x faster than half
    write_reports(summary, tmp_path)
    text = (tmp_path / "ablation.md").read_text()
    assert "2.000 (1 non-finite)" in text and "| non-finite |" in text and "(1 seeds)" in text
    # A cell that diverged on one seed ranks after those that never did, however good its other seeds.
    results["lucky"] = {0: metrics(math.nan), 1: metrics(0.5)}
    rows = summarise("t", [0, 1], 5, ["synthetic"], results, [], compare=[("lucky", "good")])
    assert [r["cell"] for r in rows["tables"]["synthetic"]] == ["good", "lucky", "half", "diverged"]
    write_reports(rows, tmp_path)
    assert "-0.700 (1 of 2 non-finite, left out of the mean)" in (tmp_path / "ablation.md").read_text()


def test_cells_without_results_read_failed_or_not_run_and_names_stay_in_their_column(tmp_path):
    metrics = {"synthetic": {"epe": 1.0, "d1": 0.1, "bad1": 0.2, "bad2": 0.15, "bad3": 0.1}}
    results = {"a | b": {0: metrics}, "crashed": {}, "pending": {}}
    failures = [{"cell": "crashed", "seed": 0, "error": "boom"}]
    write_reports(summarise("t", [0], 5, ["synthetic"], results, failures), tmp_path)
    lines = (tmp_path / "ablation.md").read_text().splitlines()
    assert "| 1 | a \\| b | 1 |" in "\n".join(lines)
    assert any("| crashed |" in line and "| failed |" in line for line in lines)
    assert any("| pending |" in line and "| not run |" in line for line in lines)
    html = (tmp_path / "ablation.html").read_text()
    assert ">failed</text>" in html and ">not run</text>" in html


def test_the_lean_proxy_file_expands_to_every_member_scratch_and_distilled():
    config, root = load_ablation(CONFIGS / "bench" / "proxy_lean.yaml")
    cells = {c.name: c for c in expand(config, root)}
    members = {"lean": "lean", "lean_l": "lean-l", "lean_s": "lean-s", "lean_xs": "lean-xs"}
    for row, arch in members.items():
        scratch, distilled = cells[f"{row}_scratch"], cells[f"{row}_distilled_3x"]
        assert scratch.config["model"]["arch"] == distilled.config["model"]["arch"] == arch
        assert not scratch.distill and distilled.distill and distilled.teacher_cell == "dsnet_teacher_3x"
        # The two rows of a member differ only in distillation.
        drop = ("distill", "teacher")
        assert {k: v for k, v in scratch.config.items() if k not in drop} == {
            k: v for k, v in distilled.config.items() if k not in drop
        }
    # The same data, steps and evaluation as the zoo's proxy benchmark.
    zoo, zoo_root = load_ablation(CONFIGS / "bench" / "proxy.yaml")
    zoo_cells = {c.name: c for c in expand(zoo, zoo_root)}
    for key in ("data", "steps", "supervised"):
        assert cells["lean_scratch"].config[key] == zoo_cells["dsnet_scratch"].config[key]
    assert config.eval == zoo.eval and config.bench.size == zoo.bench.size
    assert cells["dsnet_teacher_3x"].config == zoo_cells["dsnet_teacher_3x"].config


def test_the_fast_proxy_file_shares_the_lean_files_teacher_and_lean_rows():
    """Same protocol as proxy_lean.yaml, and the very same cells for the teacher and the lean rows
    (their fingerprints match, so a run can reuse proxy_lean's), plus the peers and their gains."""
    from stereodistill.experiments.ablation_runs import fingerprints

    fast, fast_root = load_ablation(CONFIGS / "bench" / "proxy_fast.yaml")
    lean, lean_root = load_ablation(CONFIGS / "bench" / "proxy_lean.yaml")
    fast_cells, lean_cells = expand(fast, fast_root), expand(lean, lean_root)
    evals = {name: to_dict(spec) for name, spec in fast.eval.items()}
    assert fast.eval == lean.eval and fast.bench.size == lean.bench.size
    shared = {"dsnet_teacher_3x", "lean_scratch", "lean_distilled_3x", "lean_s_distilled_3x", "lean_xs_distilled_3x"}
    fast_prints, lean_prints = fingerprints(fast_cells, [0], evals), fingerprints(lean_cells, [0], evals)
    assert all(fast_prints[name, 0] == lean_prints[name, 0] for name in shared)
    by_name = {c.name: c for c in fast_cells}
    for peer in ("coex", "fast-acvnet-plus", "lightstereo-s"):
        row = by_name[f"{peer.replace('-', '_')}_scratch"]
        assert row.config["model"]["arch"] == peer and not row.distill
        assert row.config["data"] == by_name["lean_scratch"].config["data"]
        assert row.config["steps"] == by_name["lean_scratch"].config["steps"]
    for peer in ("coex", "lightstereo_s"):
        assert by_name[f"{peer}_distilled_3x"].teacher_cell == "dsnet_teacher_3x"
        assert [f"{peer}_distilled_3x", f"{peer}_scratch"] in [list(pair) for pair in fast.compare]


def test_a_damaged_cell_result_is_named(tmp_path):
    from stereodistill.errors import DataError
    from stereodistill.experiments.ablation_runs import is_finished

    (tmp_path / "result.json").write_text('{"fingerprint": ')
    with pytest.raises(
        DataError, match=r"result.json: is damaged: not valid JSON .*; delete it to run that cell again"
    ):
        is_finished(tmp_path, "abc")


def test_an_evaluation_set_the_cells_cannot_use_is_refused_before_any_cell_trains(ablation_file, tmp_path):
    from stereodistill.data.formats import write_image

    rng = np.random.default_rng(0)
    for name, width in (("l.png", 64), ("r.png", 60)):
        write_image(tmp_path / "mine" / name, rng.random((32, width, 3)))
    (tmp_path / "mine" / "pairs.csv").write_text("left,right\nl.png,r.png\n")
    data = yaml.safe_load(ablation_file.read_text())
    data["eval"]["mine"] = {"dataset": "pairs", "root": "mine/pairs.csv"}  # relative to the ablation file
    ablation_file.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(DataError, match=r"none of the 1 pair of eval.mine has ground truth; every cell is scored"):
        run_ablation(ablation_file, tmp_path / "out", log=lambda line: None)
    assert not (tmp_path / "out").exists()  # no cell trained


def test_a_baseline_result_without_metrics_is_named(tmp_path):
    from stereodistill.experiments.ablation_runs import baseline_file, collect_baselines

    path = baseline_file(tmp_path, "sgbm")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"baseline": "sgbm", "max_disp": 16, "eval": {}}))
    with pytest.raises(DataError, match=r"is damaged: it holds no metrics; delete it to evaluate the baseline again"):
        collect_baselines(["sgbm"], 16, {}, tmp_path)


def test_a_latency_measured_on_a_busy_machine_is_marked_noisy(tmp_path):
    metrics = {"synthetic": {"epe": 1.0, "d1": 0.1, "bad1": 0.2, "bad2": 0.15, "bad3": 0.1}}
    bench = {"reference": "a", "size": [8, 8], "device": "cpu", "threads": 1, "repeats": 2, "warmup": 0}
    speed = {"params": 1000, "gmacs": 1.0, "latency_min_ms": 25.0}
    bench["cells"] = {
        "a": {**speed, "latency_ms": 30.0, "latency_max_ms": 31.0, "noisy": False},
        "b": {**speed, "latency_ms": 111.0, "latency_max_ms": 197.0, "noisy": True},
    }
    summary = summarise("t", [0], 5, ["synthetic"], {"a": {0: metrics}, "b": {0: metrics}}, [], bench)
    write_reports(summary, tmp_path)
    text = (tmp_path / "ablation.md").read_text()
    assert "| 111 (noisy) |" in text and "| 30.0 |" in text and "the machine was probably busy" in text


def test_a_cell_the_user_interrupts_is_not_recorded_as_failed(tmp_path, monkeypatch):
    from stereodistill.experiments import ablation_runs
    from stereodistill.experiments.ablation_runs import Cell

    def interrupted(*args, **kwargs):  # Ctrl-C while the cell sets up its run
        raise KeyboardInterrupt

    monkeypatch.setattr(ablation_runs, "from_dict", interrupted)
    monkeypatch.setattr(ablation_runs, "exit_with_parent", lambda parent: None)  # not on this test process
    monkeypatch.setattr("stereodistill.runtime.configure_cpu_math", lambda: None)
    monkeypatch.setattr("torch.set_num_threads", lambda threads: None)
    cell = Cell(name="a", config={}, distill=False)
    with pytest.raises(SystemExit) as info:
        ablation_runs._run_one(os.getpid(), cell, 0, {}, str(tmp_path / "a"), {}, 1, "cpu", ("f", "t"))
    assert info.value.code == ablation_runs.INTERRUPTED
    assert not (tmp_path / "a" / "error.json").exists()  # not run: the next ablation redoes it


def test_a_non_finite_metric_is_written_as_strict_json_and_read_back_as_non_finite(tmp_path, monkeypatch):
    import os
    from types import SimpleNamespace

    from stereodistill.checkpoint import save_model
    from stereodistill.experiments.ablation import collect
    from stereodistill.experiments.ablation_runs import Cell, _run_one
    from stereodistill.models import build_model
    from stereodistill.runtime import torch_threads

    folder = tmp_path / "cells" / "c" / "seed0"
    save_model(folder / "run" / "model", build_model("lean-xs", max_disp=16))
    diverged = {"synthetic": {"epe": math.inf, "d1": math.nan, "bad3": 0.5}}
    monkeypatch.setattr("stereodistill.evaluate.evaluator.evaluate_model", lambda *args, **kwargs: diverged)
    with torch_threads(1):  # the cell's evaluation only, in this process
        _run_one(os.getppid(), Cell("c", {}, distill=False), 0, {}, str(folder), {}, 1, "cpu", ("fp", "t"), train=False)

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    json.loads((folder / "result.json").read_text(), parse_constant=refuse)  # what every JSON reader can read
    results, _, _ = collect(SimpleNamespace(seeds=[0]), [Cell("c", {}, distill=False)], tmp_path, {("c", 0): "fp"})
    metrics = results["c"][0]["synthetic"]
    assert math.isnan(metrics["epe"]) and math.isnan(metrics["d1"]) and metrics["bad3"] == 0.5


def test_an_evaluation_set_without_a_split_is_recorded_at_its_evaluation_split(ablation_file, tmp_path):
    data = yaml.safe_load(ablation_file.read_text())
    data["eval"] = {
        "synthetic": {"dataset": "synthetic", "pairs": 2, "size": [32, 64], "max_disp": 16},
        "listed": {"dataset": "pairs", "root": str(tmp_path / "pairs.csv")},
        "moto": {"dataset": "middlebury-motorcycle", "max_disp": 32},
    }
    ablation_file.write_text(yaml.safe_dump(data))
    config, _ = load_ablation(ablation_file)
    # What the cells' fingerprints hold: "train" as before where the same pairs are read (a pairs list,
    # the one Motorcycle pair), so finished cells stay finished; synthetic reads its test pairs now.
    assert {name: to_dict(spec)["split"] for name, spec in config.eval.items()} == {
        "synthetic": "test",
        "listed": "train",
        "moto": "train",
    }


def test_stages_in_absolute_steps_are_scaled_by_the_budget_and_not_overruled_by_the_files_steps(ablation_file):
    base = yaml.safe_load((ablation_file.parent / "base.yaml").read_text())
    base["stages"] = [{"name": "a", "steps": 2, "terms": ["feat"]}, {"name": "b", "steps": 1}]
    del base["steps"]
    (ablation_file.parent / "base.yaml").write_text(yaml.safe_dump(base))
    config, root = load_ablation(ablation_file)
    with pytest.raises(
        ConfigError, match=r"its stages are given in absolute steps, which set its length, so the file's"
    ):
        expand(config, root)  # the file says 2 steps a cell; the stages would train 3
    plain = yaml.safe_load(ablation_file.read_text())
    del plain["steps"]
    ablation_file.write_text(yaml.safe_dump(plain))
    config, root = load_ablation(ablation_file, budget="2")
    cells = {c.name: c.config for c in expand(config, root)}
    assert [s["steps"] for s in cells["points=all,tau=t1"]["stages"]] == [4, 2]
    assert cells["points=all,tau=t1"]["steps"] == 6  # what the report says is what runs
    assert cells["no_kd"]["steps"] == 6 and "stages" not in cells["no_kd"]  # no terms: as long, in one stage
    # A row's own steps: its own length without terms; with terms, they must be what its stages add up to.
    plain["fixed"]["short"] = {"terms": [], "steps": 5}
    plain["fixed"]["contradicts"] = {"steps": 5}
    ablation_file.write_text(yaml.safe_dump(plain))
    config, root = load_ablation(ablation_file)
    with pytest.raises(ConfigError, match=r"cell 'contradicts': steps is 5, but the stages, given in absolute steps"):
        expand(config, root)
    del plain["fixed"]["contradicts"]
    ablation_file.write_text(yaml.safe_dump(plain))
    config, root = load_ablation(ablation_file, budget="0.1")
    cells = {c.name: c.config for c in expand(config, root)}
    assert cells["short"]["steps"] == 1 and [s["steps"] for s in cells["points=all,tau=t1"]["stages"]] == [1, 1]


def test_cells_that_differ_only_by_overrides_that_do_not_apply_are_named_as_one_run(ablation_file):
    from stereodistill.experiments.ablation import same_runs

    config, root = load_ablation(ablation_file)
    assert same_runs(expand(config, root)) == []
    config.axes["tau"]["t4"] = {"distill.terms.kl.params.tau": 4.0}  # "feat" leaves kl out: tau cannot apply
    assert same_runs(expand(config, root)) == [["points=feat,tau=t1", "points=feat,tau=t4"]]


def test_a_choice_yaml_reads_as_true_or_false_is_refused_with_the_fix(ablation_file):
    text = ablation_file.read_text().replace("    feat:", "    on:", 1)
    assert "    on:" in text
    ablation_file.write_text(text)
    with pytest.raises(ConfigError, match=r"axes.points: the name True is not text .*: quote it, as 'on' or 'off'"):
        load_ablation(ablation_file)

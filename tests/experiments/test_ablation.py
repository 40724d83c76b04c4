"""The ablation runner on a tiny grid: expansion by name, resumability, failures, statistics."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from stereodistill.checkpoint import save_model
from stereodistill.errors import ConfigError
from stereodistill.experiments.ablation import ci95, expand, load_ablation, run_ablation
from stereodistill.models import build_model

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

    lines.clear()
    run_ablation(ablation_file, out, log=lines.append)  # resumed: only the failed cell runs again
    assert "6 finished before, 2 to run" in lines[0]
    assert (out / "cells" / "no_kd" / "seed0" / "result.json").stat().st_mtime_ns == first


def test_ci95_uses_student_t():
    assert math.isnan(ci95([1.0]))
    assert ci95([1.0, 3.0]) == pytest.approx(12.706 * math.sqrt(2) / math.sqrt(2))

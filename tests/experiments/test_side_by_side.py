"""Runs trained side by side: each an ordinary, seeded run in its own process; a failure names its run."""

from __future__ import annotations

import pytest
import torch

from stereodistill.checkpoint import read_weights
from stereodistill.config import from_dict
from stereodistill.experiments.side_by_side import Job, SideBySideError, train_side_by_side
from stereodistill.runtime import torch_threads
from stereodistill.train.config import RunConfig
from stereodistill.train.trainer import Trainer

TINY = {
    "model": {"arch": "lean-xs", "max_disp": 16},
    "data": {
        "train": {"dataset": "synthetic", "pairs": 4, "size": [32, 64], "max_disp": 16},
        "crop": [32, 64],
        "batch_size": 2,
    },
    "steps": 2,
    "optim": {"lr": 1e-3, "schedule": "constant"},
    "log_every": 1,
}


def config(folder, **changes) -> RunConfig:
    return from_dict(RunConfig, {**TINY, "output": str(folder), **changes})


def test_runs_side_by_side_train_what_they_would_alone_and_label_their_progress(tmp_path, capfd):
    jobs = {"a": Job(config(tmp_path / "a"), distill=False), "b": Job(config(tmp_path / "b", seed=1), distill=False)}
    lines: list[str] = []
    done = train_side_by_side(jobs, threads=1, log=lines.append)
    assert set(done) == {"a", "b"} and all(done[name]["seconds"] > 0 for name in done)
    assert done["a"]["result"]["step"] == 2 and sorted(line.split()[0] for line in lines) == ["a", "b"]
    err = capfd.readouterr().err
    assert "[a] step 2/2" in err and "[b] step 2/2" in err
    with torch_threads(1):  # the same run alone, in this process, on the same one thread
        Trainer(config(tmp_path / "alone"), distill=False).run()
    alone, a, b = (read_weights(tmp_path / name / "model") for name in ("alone", "a", "b"))
    assert all(torch.equal(alone[key], a[key]) for key in alone)
    assert not all(torch.equal(alone[key], b[key]) for key in alone)  # another seed, another run


def test_a_failing_run_stops_the_others_and_is_named_with_its_error(tmp_path):
    teacher = {"checkpoint": str(tmp_path / "missing" / "model")}
    jobs = {
        "long": Job(config(tmp_path / "long", steps=10_000), distill=False),
        "broken": Job(
            config(
                tmp_path / "broken",
                teacher=teacher,
                distill={"terms": [{"name": "d", "student": "disparity", "teacher": "disparity", "loss": "l1"}]},
            ),
            distill=True,
        ),
    }
    with pytest.raises(SideBySideError, match=r"^broken: .*missing"):
        train_side_by_side(jobs, threads=1, log=lambda _: None)
    assert not (tmp_path / "long" / "model.safetensors").exists()

"""Sets of pairs a run cannot use are refused before its first step, not found as a zero loss or
after the last step; and a metric that is not finite is written as strict JSON."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from stereodistill.cli.main import main
from stereodistill.data.formats import write_pfm
from stereodistill.errors import DataError
from stereodistill.train.trainer import Trainer

from .test_trainer import TINY, config


def write_pairs(folder, sizes, truth=True):
    """A pairs CSV of one pair per (left, right) size; ground truth of the left's size when ``truth``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["left,right" + (",disp" if truth else "")]
    for index, (left, right) in enumerate(sizes):
        for name, (h, w) in (("l", left), ("r", right)):
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}{index}.png")
        if truth:
            write_pfm(folder / f"d{index}.pfm", np.full(left, 4.0, dtype=np.float32))
        lines.append(f"l{index}.png,r{index}.png" + (f",d{index}.pfm" if truth else ""))
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    return folder / "pairs.csv"


def pairs(csv_path):
    return {"dataset": "pairs", "root": str(csv_path)}


def test_training_pairs_without_ground_truth_are_refused_before_any_step(tmp_path):
    listed = write_pairs(tmp_path / "p", [((32, 64), (32, 64))] * 2, truth=False)
    out = tmp_path / "run"
    with pytest.raises(DataError, match=r"none of the 2 pairs of data.train has ground truth; the supervised loss"):
        Trainer(config(out, data={**TINY["data"], "train": pairs(listed)}), distill=False)
    assert not out.exists() or not list(out.iterdir())
    # With nothing that reads it (no supervised loss, no ground-truth mask), the same pairs are fine.
    quiet = {"weight": 0}
    Trainer(config(out, data={**TINY["data"], "train": pairs(listed)}, supervised=quiet), distill=False)
    unsupervised = [{"name": "a", "steps": 3, "supervised": False}]  # only the photometric loss
    photometric = {"weight": 1.0}
    Trainer(
        config(
            tmp_path / "r2", data={**TINY["data"], "train": pairs(listed)}, stages=unsupervised, photometric=photometric
        ),
        distill=False,
    )


def test_a_validation_set_without_ground_truth_or_of_mismatched_views_is_refused_before_training(tmp_path, capsys):
    no_truth = write_pairs(tmp_path / "a", [((32, 64), (32, 64))], truth=False)
    with pytest.raises(DataError, match=r"none of the 1 pair of data.val has ground truth; validation scores"):
        Trainer(config(tmp_path / "r1", data={**TINY["data"], "val": pairs(no_truth)}), distill=False)
    mismatched = write_pairs(tmp_path / "b", [((32, 64), (32, 64)), ((32, 64), (24, 64))])
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**TINY, "output": str(tmp_path / "r2"), "data": {**TINY["data"]}}))
    assert main(["train", str(path), "data.val.dataset=pairs", f"data.val.root={mismatched}"]) == 2
    err = capsys.readouterr().err
    assert "data.val: 1 bad pair(s), found before training" in err and "r1.png: is 24x64 (HxW)" in err
    assert "step 1/" not in err and not (tmp_path / "r2" / "scalars.csv").exists()
    # Only the pairs validation reads are checked: the first one is fine.
    limited = {**TINY, "val_samples": 1, "data": {**TINY["data"], "val": pairs(mismatched)}}
    Trainer(config(tmp_path / "r3", **{k: v for k, v in limited.items() if k != "output"}), distill=False)


def test_a_metric_that_is_not_finite_is_written_as_null(tmp_path):
    """A network that predicts NaN scores an infinite EPE: model.json stays strict JSON."""
    listed = write_pairs(tmp_path / "p", [((32, 64), (32, 64))])
    out = tmp_path / "run"
    trainer = Trainer(config(out, steps=1, data={**TINY["data"], "val": pairs(listed)}), distill=False)

    def diverged(module, inputs, output):  # in evaluation only: training itself stays finite
        if not module.training:
            output.disparity = torch.full_like(output.disparity, float("nan"))
        return output

    trainer.unit.student.register_forward_hook(diverged)
    trainer.run()
    record = json.loads((out / "model.json").read_text(), parse_constant=lambda name: pytest.fail(name))
    assert record["metrics"]["epe"] is None

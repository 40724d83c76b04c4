"""A resumed run is the uninterrupted run, bit for bit: after a clean stop and after SIGKILL, with
the stateful weightings (DWA's running sums and history, uncertainty's log-variances) and adapters."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from stereodistill.checkpoint import load_model, save_model
from stereodistill.cli.main import main
from stereodistill.models import build_model
from stereodistill.runtime import torch_threads

from .test_trainer import TINY

TERMS = [
    {"name": "feat", "student": "feat.left.s4", "teacher": "feat.left.s4", "loss": "cosine", "adapter": "conv"},
    {
        "name": "kl",
        "student": "logits.0",
        "teacher": "logits.0",
        "loss": "kl",
        "params": {"tau": 2.0},
        "weight": {"type": "step", "value": 1.0, "rate": 10, "epochs": [2]},
    },
]


def write_config(tmp_path, weighting, steps=10):
    save_model(tmp_path / "teacher", build_model("dsnet", max_disp=16))
    config = {
        **TINY,
        "steps": steps,  # 8 pairs in batches of 2: 4 steps an epoch, so DWA adapts after step 8
        "teacher": {"checkpoint": str(tmp_path / "teacher")},
        "distill": {"terms": TERMS, "weighting": weighting},
        "checkpoint_every": 1,
        "log_every": 1,
    }
    path = tmp_path / f"{weighting['type']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def assert_same_run(a, b):
    expected, got = load_model(a / "model").state_dict(), load_model(b / "model").state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)
    rows_a = (a / "scalars.csv").read_text().splitlines()
    rows_b = (b / "scalars.csv").read_text().splitlines()
    assert rows_b == rows_a  # no repeated rows, and the same losses (DWA factors included)


@pytest.mark.parametrize(
    ("weighting", "stop_at"),
    [({"type": "dwa", "temperature": 2.0}, 6), ({"type": "dwa", "temperature": 2.0}, 8), ({"type": "uncertainty"}, 6)],
)
def test_stop_and_resume_is_the_uninterrupted_run(tmp_path, weighting, stop_at):
    config = write_config(tmp_path, weighting)
    assert main(["distill", str(config), f"output={tmp_path / 'full'}"]) == 0
    from stereodistill.cli.train_cmd import load_run_config
    from stereodistill.train.trainer import Trainer

    cut = load_run_config(str(config), [f"output={tmp_path / 'cut'}"])
    # Step 6: mid-epoch 2, DWA's running sums half full; step 8: epoch 2's last, its end (DWA's new
    # weights) still to come when the run goes on.
    Trainer(cut, distill=True).run(stop_at=stop_at)
    assert main(["distill", str(config), f"output={tmp_path / 'cut'}", "--resume"]) == 0
    assert_same_run(tmp_path / "full", tmp_path / "cut")


@pytest.mark.parametrize(
    ("command", "weighting"), [("train", None), ("distill", {"type": "dwa"}), ("distill", {"type": "uncertainty"})]
)
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_run(tmp_path, command, weighting):
    config = write_config(tmp_path, weighting or {"type": "fixed"}, steps=12)
    if command == "train":  # the same run without its teacher and terms
        data = yaml.safe_load(config.read_text())
        data.pop("teacher"), data.pop("distill")
        config.write_text(yaml.safe_dump(data))
    # All three runs in one numeric mode, whatever ran before in this process: one thread, and `main`
    # (the console script would also flush subnormals, which `main` leaves alone). Float sums depend on
    # the thread count, and Adam's first steps turn the rounding into lr-sized differences.
    with torch_threads(1):
        assert main([command, str(config), f"output={tmp_path / 'full'}"]) == 0
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run_main = "import sys; from stereodistill.cli.main import main; sys.exit(main(sys.argv[1:]))"
    command_line = [sys.executable, "-c", run_main, command, str(config), f"output={out}"]
    process = subprocess.Popen(command_line, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((out / "checkpoints").glob("step-000000[5-9].json")) and time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("the run ended before it could be killed")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "model.json").exists()  # killed part-way
    with torch_threads(1):
        assert main([command, str(config), f"output={out}", "--resume"]) == 0
    assert_same_run(tmp_path / "full", out)


def test_dwa_averages_the_raw_term_losses_not_the_scheduled_ones(tmp_path):
    from stereodistill.cli.train_cmd import load_run_config
    from stereodistill.train.trainer import Trainer

    config = write_config(tmp_path, {"type": "dwa"}, steps=1)
    run = load_run_config(str(config), [f"output={tmp_path / 'r'}", "distill.terms.feat.weight=0.001"])
    trainer = Trainer(run, distill=True)
    trainer.run()
    logged = {
        row.split(",")[2]: float(row.split(",")[3]) for row in (tmp_path / "r" / "scalars.csv").read_text().split()[1:]
    }
    assert trainer._epoch_sums["feat"] == pytest.approx(logged["feat"] / 0.001, rel=1e-4)  # logged: weighted


def test_a_terms_epoch_mean_is_over_the_steps_it_was_active():
    from types import SimpleNamespace

    from stereodistill.train.trainer import Trainer, epoch_sums_from

    seen = []
    trainer = SimpleNamespace(_epoch_sums={}, unit=SimpleNamespace(weighting=SimpleNamespace(end_epoch=seen.append)))
    for step in range(4):  # a stage runs "kl" on the last step only
        parts = {"supervised": 2.0, **({"kl": 3.0} if step == 3 else {})}
        Trainer._epoch_means_add(trainer, parts)
    Trainer._end_epoch(trainer)
    assert seen == [{"supervised": 2.0, "kl": 3.0}]  # kl's mean was 0.75: diluted by the steps it sat out
    # Resumed mid-epoch from a checkpoint written before per-term counts: 2 steps before it, 2 after,
    # and a term a stage starts after it.
    trainer._epoch_sums = epoch_sums_from({"supervised": 8.0, "_n": 2.0})
    Trainer._epoch_means_add(trainer, {"supervised": 2.0})
    Trainer._epoch_means_add(trainer, {"supervised": 2.0, "kl": 1.0})
    Trainer._end_epoch(trainer)
    assert seen[-1] == {"supervised": 3.0, "kl": 1.0}  # 12 over 4 steps; kl over its one step
    assert epoch_sums_from({"kl": None})["kl"] != epoch_sums_from({"kl": None})["kl"]  # null: NaN


def test_a_step_skipped_part_way_through_its_micro_batches_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    from stereodistill.config import from_dict
    from stereodistill.train.config import RunConfig
    from stereodistill.train.trainer import Trainer

    losses = Trainer.compute_losses

    def nan_at_step_0(self, batch, stage, step, epoch, labelled=True):  # its first micro-batch: the rest undrawn
        total, *rest = losses(self, batch, stage, step, epoch, labelled)
        return (total * float("nan") if step == 0 else total, *rest)

    monkeypatch.setattr(Trainer, "compute_losses", nan_at_step_0)
    settings = {**TINY, "steps": 4, "optim": {**TINY["optim"], "accumulate": 2}, "checkpoint_every": 1}
    with torch_threads(1):
        Trainer(from_dict(RunConfig, {**settings, "output": str(tmp_path / "full")}), distill=False).run()
        cut = from_dict(RunConfig, {**settings, "output": str(tmp_path / "cut")})
        Trainer(cut, distill=False).run(stop_at=2)
        Trainer(cut, distill=False, resume=True).run()
    assert_same_run(tmp_path / "full", tmp_path / "cut")

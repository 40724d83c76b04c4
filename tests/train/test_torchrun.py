"""DDP exactly as the README documents it: `torchrun --nproc_per_node 2 -m stereodistill.cli.main ...`
(gloo on CPU), for `train` and for `distill`. Two processes with a global batch of 4 (2 each) give the
one-process result with the same global batch (2 accumulated micro-batches of 2), and the learnable
loss weights stay synchronised (they end where the one-process run's end). Parameters are compared:
BatchNorm's running statistics differ by design (each process normalises its own share of the batch,
as plain DDP does; `sync_bn` on CUDA changes that)."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from stereodistill.checkpoint import load_model, save_model
from stereodistill.models import build_model

from .test_trainer import TINY

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable))
pytestmark = pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed beside this Python")


def run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every process
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def both(tmp_path, command: str, config: dict) -> tuple[str, str]:
    path = tmp_path / f"{command}.yaml"
    path.write_text(yaml.safe_dump(config))
    ddp, one = tmp_path / f"{command}-ddp", tmp_path / f"{command}-one"
    cli = ["-m", "stereodistill.cli.main", command, str(path)]
    run([TORCHRUN, "--standalone", "--nproc_per_node", "2", *cli, f"output={ddp}", "data.batch_size=4"])
    run([sys.executable, *cli, f"output={one}", "optim.accumulate=2"])
    return ddp, one


def assert_close_states(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(value, b[key], rtol=1e-4, atol=1e-5, msg=key)


def parameters(folder) -> dict:
    return {k: v.detach() for k, v in load_model(folder / "model").named_parameters()}


def test_torchrun_train_matches_one_process(tmp_path):
    ddp, one = both(tmp_path, "train", {**TINY, "device": "cpu"})
    assert_close_states(parameters(ddp), parameters(one))


def test_torchrun_distill_matches_one_process_and_keeps_learnable_weights_in_sync(tmp_path):
    save_model(tmp_path / "teacher", build_model("dsnet", max_disp=16))
    terms = [
        {"name": "feat", "student": "feat.left.s4", "teacher": "feat.left.s4", "loss": "cosine", "adapter": "conv"},
        {"name": "kl", "student": "logits.0", "teacher": "logits.0", "loss": "kl", "params": {"tau": 2.0}},
    ]
    config = {
        **TINY,
        "device": "cpu",
        "teacher": {"checkpoint": str(tmp_path / "teacher")},
        "distill": {"terms": terms, "weighting": {"type": "uncertainty"}},
    }
    ddp, one = both(tmp_path, "distill", config)
    assert_close_states(parameters(ddp), parameters(one))
    # Adapters and the learnable log-variances are in the last checkpoint's state file.
    (ddp_state,) = (ddp / "checkpoints").glob("step-*.state.safetensors")
    (one_state,) = (one / "checkpoints").glob("step-*.state.safetensors")
    extras = {k: v for k, v in load_file(str(ddp_state)).items() if k.startswith("extra.")}
    assert any("log_vars" in k for k in extras) and any("adapter" in k for k in extras)
    assert_close_states(extras, {k: v for k, v in load_file(str(one_state)).items() if k.startswith("extra.")})


def scalars(folder) -> list[str]:
    return [row for row in (folder / "scalars.csv").read_text().splitlines() if ",rate," not in row]


def test_torchrun_dwa_weighs_the_global_batchs_losses_as_one_process_does(tmp_path):
    save_model(tmp_path / "teacher", build_model("dsnet", max_disp=16))
    terms = [
        {"name": "feat", "student": "feat.left.s4", "teacher": "feat.left.s4", "loss": "cosine", "adapter": "conv"},
        {"name": "kl", "student": "logits.0", "teacher": "logits.0", "loss": "kl", "params": {"tau": 2.0}},
    ]
    config = {  # 8 pairs in global batches of 4: DWA's weights move from step 5 on
        **TINY,
        "steps": 6,
        "device": "cpu",
        "teacher": {"checkpoint": str(tmp_path / "teacher")},
        "distill": {"terms": terms, "weighting": {"type": "dwa"}},
    }
    ddp, one = both(tmp_path, "distill", config)
    assert_close_states(parameters(ddp), parameters(one))
    factors = [[row for row in scalars(run) if ",factor/" in row and row.startswith("6,")] for run in (ddp, one)]
    assert factors[0] and len(factors[0]) == len(factors[1])
    for got, expected in zip(*factors, strict=True):  # the logged losses and weights: the global batch's
        assert float(got.rsplit(",", 1)[1]) == pytest.approx(float(expected.rsplit(",", 1)[1]), rel=1e-4)


def test_torchrun_skips_a_step_non_finite_on_one_process_only_and_says_a_refusal_once(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**TINY, "device": "cpu", "steps": 2}))
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(
        "import sys\n"
        "from stereodistill.train import trainer\n"
        "losses = trainer.Trainer.compute_losses\n"
        "def nan_on_rank_1(self, batch, stage, step, epoch, labelled=True):\n"
        "    total, *rest = losses(self, batch, stage, step, epoch, labelled)\n"
        "    return (total * float('nan') if self.dist.rank == 1 and step == 0 else total, *rest)\n"
        "trainer.Trainer.compute_losses = nan_on_rank_1\n"
        "from stereodistill.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [TORCHRUN, "--standalone", "--nproc_per_node", "2", str(script), "train", str(path), f"output={out}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # both skipped step 0, together: no collective mismatch
    assert "step 0: non-finite loss, step skipped (1 in a row)" in done.stderr
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)  # the folder is used
    assert again.returncode != 0
    assert again.stderr.count("stereodistill: error:") == 1 and "holds a run already" in again.stderr
    assert "[rank1]" not in again.stderr  # the other process stops quietly, not with a broken connection

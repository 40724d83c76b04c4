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

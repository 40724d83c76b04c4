import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from stereodistill.checkpoint import load_model
from stereodistill.config import from_dict
from stereodistill.errors import ConfigError, DataError
from stereodistill.runtime import torch_threads
from stereodistill.train.config import RunConfig
from stereodistill.train.trainer import Trainer, TrainingError

TINY = {
    "model": {"arch": "dsnet", "max_disp": 16},
    "data": {
        "train": {"dataset": "synthetic", "pairs": 8, "size": [32, 64], "max_disp": 16},
        "crop": [32, 64],
        "batch_size": 2,
    },
    "steps": 3,
    "optim": {"lr": 1e-3, "schedule": "cosine"},
    "log_every": 1,
}


def config(tmp_path, **changes):
    data = {**TINY, "output": str(tmp_path), **changes}
    return from_dict(RunConfig, data)


def params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_supervised_run_writes_model_log_config_and_checkpoint(tmp_path):
    val = {"dataset": "synthetic", "pairs": 2, "size": [32, 64], "max_disp": 16, "split": "test"}
    cfg = config(tmp_path, data={**TINY["data"], "val": val})
    result = Trainer(cfg, distill=False).run()
    assert result["step"] == 3 and 0 < result["metrics"]["epe"] < 16
    for name in ("model.safetensors", "model.json", "best.safetensors", "config.yaml", "scalars.csv"):
        assert (tmp_path / name).is_file(), name
    assert load_model(tmp_path / "model").arch == "dsnet"
    rows = (tmp_path / "scalars.csv").read_text().splitlines()
    assert rows[0] == "step,stage,name,value" and any(",supervised," in r for r in rows)


def test_freeze_bn_keeps_the_running_statistics_while_the_weights_and_validation_go_on(tmp_path):
    val = {"dataset": "synthetic", "pairs": 1, "size": [32, 64], "max_disp": 16, "split": "test"}

    def statistics_and_weights(freeze: bool, out):
        trainer = Trainer(config(out, freeze_bn=freeze, val_every=1, data={**TINY["data"], "val": val}), distill=False)
        norms = [m for m in trainer.student.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        before = [(m.running_mean.clone(), m.weight.detach().clone()) for m in norms]
        trainer.run()
        return [
            (torch.equal(mean, m.running_mean), torch.equal(w, m.weight.detach()))
            for (mean, w), m in zip(before, norms, strict=True)
        ]

    frozen = statistics_and_weights(True, tmp_path / "frozen")
    assert all(same_stats for same_stats, _ in frozen) and not all(same_w for _, same_w in frozen)
    free = statistics_and_weights(False, tmp_path / "free")
    assert not all(same_stats for same_stats, _ in free)


def test_validating_more_often_trains_the_same_weights(tmp_path):
    # The quickstart validates every 250 steps, not 100, to save time: that may change nothing else.
    val = {"dataset": "synthetic", "pairs": 2, "size": [32, 64], "max_disp": 16, "split": "test"}
    data = {**TINY["data"], "val": val}
    with torch_threads(1):
        often = Trainer(config(tmp_path / "often", val_every=1, data=data), distill=False)
        often.run()
        rarely = Trainer(config(tmp_path / "rarely", val_every=0, data=data), distill=False)
        rarely.run()
    assert (tmp_path / "often" / "scalars.csv").read_text().count("val/epe") == 3
    assert (tmp_path / "rarely" / "scalars.csv").read_text().count("val/epe") == 1  # the final one
    trained, other = often.student.state_dict(), rarely.student.state_dict()  # running statistics too
    assert all(torch.equal(trained[key], other[key]) for key in trained)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    full = Trainer(config(tmp_path / "a", steps=4), distill=False)
    full.run()
    first = Trainer(config(tmp_path / "b", steps=4), distill=False)
    assert first.run(stop_at=2) == {"step": 2, "stopped": True}
    resumed = Trainer(config(tmp_path / "b", steps=4), distill=False, resume=True)
    assert resumed.step == 2
    resumed.run()
    expected, got = params(full.unit.student), params(resumed.unit.student)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)


def test_anchor_pulls_the_weights_back_to_where_the_run_started_and_resumes_exactly(tmp_path):
    def anchored(anchor, out, steps=3):
        optim = {"lr": 1e-3, "schedule": "constant", "anchor": anchor}
        return config(out, optim=optim, steps=steps)

    def drift(anchor, out):
        trainer = Trainer(anchored(anchor, out), distill=False)
        start = params(trainer.student)
        trainer.run()
        return max(float((start[k] - v).abs().max()) for k, v in params(trainer.student).items())

    assert drift(1000.0, tmp_path / "full") < 1e-6  # lr × anchor = 1: every step is undone
    free, half = drift(0.0, tmp_path / "free"), drift(500.0, tmp_path / "half")
    assert 0 < half < free
    whole = Trainer(anchored(100.0, tmp_path / "whole", steps=4), distill=False)
    whole.run()
    Trainer(anchored(100.0, tmp_path / "split", steps=4), distill=False).run(stop_at=2)
    resumed = Trainer(anchored(100.0, tmp_path / "split", steps=4), distill=False, resume=True)
    resumed.run()  # the anchor is still the start, not the checkpoint it resumed from
    for key, value in params(whole.student).items():
        torch.testing.assert_close(params(resumed.student)[key], value, rtol=0, atol=0, msg=key)
    with pytest.raises(ConfigError, match=r"optim\.anchor"):
        config(tmp_path / "bad", optim={"anchor": -1.0})


def test_nonfinite_loss_skips_then_aborts(tmp_path, monkeypatch):
    import stereodistill.train.trainer as trainer_module

    real = trainer_module.multi_output_loss
    monkeypatch.setattr(trainer_module, "multi_output_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    cfg = config(tmp_path, max_nonfinite=2)
    with pytest.raises(TrainingError, match="non-finite for 2 steps in a row"):
        Trainer(cfg, distill=False).run()
    # Fewer steps than max_nonfinite, all skipped: an error too, and no model written as if trained.
    short = config(tmp_path / "short", steps=2, max_nonfinite=5)
    skipped_all = "no step updated the weights: the loss or its gradient was non-finite at all 2 steps"
    with pytest.raises(TrainingError, match=skipped_all):
        Trainer(short, distill=False).run()
    assert not (tmp_path / "short" / "model.safetensors").exists()
    # A skipped step still gets its checkpoint (and validation): resuming from it stays possible.
    calls = iter([1.0, float("nan"), 1.0, 1.0])
    monkeypatch.setattr(trainer_module, "multi_output_loss", lambda *a, **k: real(*a, **k) * next(calls))
    skipped = config(tmp_path / "skipped", steps=4, checkpoint_every=2, keep_last=0)
    Trainer(skipped, distill=False).run()
    assert (tmp_path / "skipped" / "checkpoints" / "step-0000002.json").is_file()


@pytest.mark.parametrize("grad_clip", [None, 1.0])
def test_a_nonfinite_gradient_under_a_finite_loss_skips_the_step(tmp_path, capsys, grad_clip):
    # Before: with a clip, every gradient scaled to zero (a step that moved nothing, silently); without
    # one, Adam wrote NaN into the weights.
    cfg = config(tmp_path, steps=3, optim={**TINY["optim"], "grad_clip": grad_clip})
    trainer = Trainer(cfg, distill=False)
    factors = iter([float("inf"), 1.0, 1.0])
    next(iter(trainer.unit.student.parameters())).register_hook(lambda grad: grad * next(factors))
    before = params(trainer.unit.student)
    trainer.run()
    after = params(trainer.unit.student)
    assert all(torch.isfinite(value).all() for value in after.values())
    assert any(not torch.equal(before[key], after[key]) for key in before)
    assert "step 0: non-finite gradient, step skipped (1 in a row)" in capsys.readouterr().err
    optim = {**TINY["optim"], "grad_clip": grad_clip}
    always = Trainer(config(tmp_path / "always", steps=2, optim=optim), distill=False)
    next(iter(always.unit.student.parameters())).register_hook(lambda grad: grad * float("inf"))
    with pytest.raises(TrainingError, match="the loss or its gradient was non-finite at all 2 steps"):
        always.run()


def test_distill_requires_teacher_and_valid_taps(tmp_path):
    Trainer(config(tmp_path / "t", steps=1), distill=False).run()
    teacher = {"checkpoint": str(tmp_path / "t" / "model")}
    with pytest.raises(ConfigError, match="teacher"):
        Trainer(config(tmp_path / "d"), distill=True)
    bad = {"terms": [{"name": "x", "student": "volume.agg.9", "teacher": "volume.cost", "loss": "cosine"}]}
    with pytest.raises(ConfigError, match=r"does not offer tap 'volume.agg.9'; it offers: disparity, feat.left.s2"):
        Trainer(config(tmp_path / "d", teacher=teacher, distill=bad), distill=True)
    with pytest.raises(ConfigError, match="use `stereodistill distill`"):
        Trainer(config(tmp_path / "d", distill=bad), distill=False)


def test_distillation_with_stages_masks_and_adaptive_weights(tmp_path):
    Trainer(config(tmp_path / "t", steps=1), distill=False).run()
    distill = {
        "terms": [
            {"name": "feat", "student": "feat.left.s2", "teacher": "feat.left.s2", "loss": "cosine"},
            {
                "name": "soft",
                "student": "logits.2",
                "teacher": "logits.2",
                "loss": "kl",
                "params": {"tau": 2.0},
                "mask": "teacher_correct",
            },
            {"name": "pseudo", "student": "disparity", "teacher": "disparity", "loss": "smooth_l1", "weight": 0.1},
        ],
        "weighting": {"type": "uncertainty"},
    }
    stages = [{"name": "features", "steps": 1, "terms": ["feat"], "supervised": False}, {"name": "all", "steps": 2}]
    cfg = config(tmp_path / "d", teacher={"checkpoint": str(tmp_path / "t" / "model")}, distill=distill, stages=stages)
    trainer = Trainer(cfg, distill=True)
    before = trainer.unit.weighting.log_vars.detach().clone()
    teacher_before = params(trainer.teacher)
    trainer.run()
    rows = (tmp_path / "d" / "scalars.csv").read_text().splitlines()
    assert any(r.startswith("1,features,feat,") for r in rows)
    assert not any(r.startswith("1,features,supervised,") for r in rows)
    assert any(r.startswith("3,all,soft,") for r in rows)
    assert not torch.equal(trainer.unit.weighting.log_vars.detach(), before)  # learnable weights trained
    for key, value in params(trainer.teacher).items():
        assert torch.equal(value, teacher_before[key])  # the teacher never changes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    data = {**TINY["data"], "batch_size": 4}
    cfg = from_dict(RunConfig, {**TINY, "data": data, "output": out, "device": "cpu"})
    Trainer(cfg, distill=False).run()
    torch.distributed.destroy_process_group()


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    port = _free_port()
    mp.start_processes(_ddp_worker, args=(2, port, str(tmp_path / "ddp")), nprocs=2, start_method="spawn")
    ddp = load_model(tmp_path / "ddp" / "model")
    # One process, same global batch of 4 as two accumulated micro-batches of 2 (DDP's per-rank share),
    # with one thread as in the workers: Adam's first steps turn tiny rounding differences into lr-sized ones.
    with torch_threads(1):
        single = Trainer(config(tmp_path / "one", optim={**TINY["optim"], "accumulate": 2}), distill=False)
        single.run()
    expected = params(single.unit.student)
    for key, value in params(ddp).items():
        torch.testing.assert_close(value, expected[key], rtol=1e-4, atol=1e-5, msg=key)


def test_bf16_autocast_channels_last_clipping_and_accumulation_train_on_cpu(tmp_path):
    optim = {**TINY["optim"], "grad_clip": 1.0, "accumulate": 2, "warmup_steps": 1}
    cfg = config(tmp_path, steps=2, amp="bf16", channels_last=True, optim=optim)
    trainer = Trainer(cfg, distill=False)
    before = params(trainer.unit.student)
    trainer.run()
    after = params(trainer.unit.student)
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_tensorboard_gets_scalars_and_validation_disparity_images_when_installed(tmp_path, monkeypatch):
    import sys
    import types

    events = []

    class FakeWriter:
        def __init__(self, log_dir):
            events.append(("dir", log_dir))

        def add_scalar(self, name, value, step):
            events.append(("scalar", name))

        def add_image(self, name, image, step):
            events.append(("image", name, tuple(image.shape)))

        def close(self):
            pass

    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    val = {"dataset": "synthetic", "pairs": 1, "size": [32, 64], "max_disp": 16, "split": "test"}
    Trainer(config(tmp_path, steps=1, data={**TINY["data"], "val": val}), distill=False).run()
    assert ("scalar", "supervised") in events and ("scalar", "val/epe") in events
    assert ("image", "val/disparity", (1, 32, 64)) in events and ("image", "val/ground_truth", (1, 32, 64)) in events


@pytest.mark.parametrize("teacher_arch", ["psmnet", "dsnet-teacher"])
def test_a_short_distillation_into_lean_trains_the_student_and_its_adapters(tmp_path, teacher_arch):
    from stereodistill.checkpoint import save_model
    from stereodistill.models import build_model

    torch.manual_seed(0)
    save_model(tmp_path / "teacher", build_model(teacher_arch, max_disp=16))
    terms = [
        {"name": "feat", "student": "feat.left.s4", "teacher": "feat.left.s4", "loss": "cosine", "adapter": "conv"},
        {"name": "kl", "student": "logits.0", "teacher": "logits.2", "loss": "kl", "params": {"tau": 2.0}},
        {"name": "pseudo", "student": "disparity", "teacher": "disparity", "loss": "smooth_l1"},
    ]
    if teacher_arch == "dsnet-teacher":  # a correlation teacher: its 40 groups pooled to the student's 8
        terms.append(
            {
                "name": "volume",
                "student": "volume.cost",
                "teacher": "volume.cost",
                "loss": "cosine",
                "adapter": "group_pool",
            }
        )
    cfg = config(
        tmp_path / "run",
        steps=2,
        model={"arch": "lean", "max_disp": 16},
        teacher={"checkpoint": str(tmp_path / "teacher")},
        distill={"terms": terms},
    )
    trainer = Trainer(cfg, distill=True)
    before = params(trainer.unit)
    trainer.run()
    after = params(trainer.unit)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("student."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("terms.feat.adapter"))
    rows = (tmp_path / "run" / "scalars.csv").read_text()
    assert all(f",{t['name']}," in rows for t in terms)
    assert load_model(tmp_path / "run" / "model").arch == "lean"


@pytest.mark.parametrize("peer", ["coex", "fast-acvnet-plus", "lightstereo-s"])
def test_a_fast_peer_distils_from_a_teacher_and_teaches_lean(tmp_path, peer):
    """The deployed fast networks are students and teachers like any other: two steps each way."""
    from stereodistill.checkpoint import save_model
    from stereodistill.models import build_model

    torch.manual_seed(0)
    save_model(tmp_path / "dsnet-teacher", build_model("dsnet-teacher", max_disp=32))
    terms = [
        {"name": "feat", "student": "feat.left.s4", "teacher": "feat.left.s4", "loss": "cosine", "adapter": "conv"},
        {"name": "kl", "student": "logits.0", "teacher": "logits.2", "loss": "kl", "params": {"tau": 2.0}},
        {"name": "pseudo", "student": "disparity", "teacher": "disparity", "loss": "smooth_l1"},
    ]
    data = {**TINY["data"], "train": {**TINY["data"]["train"], "max_disp": 32}}
    as_student = config(
        tmp_path / "student",
        steps=2,
        model={"arch": peer, "max_disp": 32},
        data=data,
        teacher={"checkpoint": str(tmp_path / "dsnet-teacher")},
        distill={"terms": terms},
    )
    trainer = Trainer(as_student, distill=True)
    before = params(trainer.unit)
    trainer.run()
    after = params(trainer.unit)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("student."))
    assert load_model(tmp_path / "student" / "model").arch == peer

    kl = {"name": "kl", "student": "logits.0", "teacher": "logits.0", "loss": "kl", "params": {"tau": 2.0}}
    as_teacher = config(
        tmp_path / "lean",
        steps=2,
        model={"arch": "lean", "max_disp": 32},
        data=data,
        teacher={"checkpoint": str(tmp_path / "student" / "model")},
        distill={"terms": [terms[0], kl, terms[2]]},
    )
    Trainer(as_teacher, distill=True).run()
    rows = (tmp_path / "lean" / "scalars.csv").read_text()
    assert ",kl," in rows and ",feat," in rows


@pytest.mark.parametrize(
    ("change", "named"),
    [({"crop": [0, 0]}, "data.crop"), ({"crop": [32]}, "data.crop"), ({"batch_size": 0}, "data.batch_size")],
)
def test_a_crop_or_batch_that_cannot_train_is_a_config_error(tmp_path, change, named):
    with pytest.raises(ConfigError, match=named):
        config(tmp_path, data={**TINY["data"], **change})


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"optim": {**TINY["optim"], "weight_decay": -1}}, "optim.weight_decay"),
        ({"optim": {**TINY["optim"], "betas": [2, 3]}}, "optim.betas"),
        ({"optim": {**TINY["optim"], "grad_clip": -1}}, "optim.grad_clip"),
        ({"optim": {**TINY["optim"], "warmup_steps": -5}}, "optim.warmup_steps"),
        ({"device": "gpu"}, "device must be"),
        ({"supervised": {"weights": [-1, 1]}}, "supervised.weights must be"),
        ({"log_every": 0}, "log_every"),
        ({"checkpoint_every": -1}, "checkpoint_every"),
        ({"epoch_steps": 0}, "epoch_steps"),
        ({"data": {**TINY["data"], "vertical_flip": 2}}, "vertical_flip"),
        ({"data": {**TINY["data"], "train": {**TINY["data"]["train"], "split": "tran"}}}, "got split 'tran'"),
        ({"stages": [{"name": "a", "fraction": 1.0, "lr": -1}]}, "lr must be"),
        ({"stages": [{"name": "a", "fraction": 1.5}, {"name": "b", "fraction": -0.5}]}, "fraction must be"),
        ({"stages": [{"name": "a", "fraction": 0.5}, {"name": "a", "fraction": 0.5}]}, "its own name"),
    ],
)
def test_settings_that_cannot_train_are_config_errors_before_any_work(tmp_path, change, named):
    with pytest.raises(ConfigError, match=named):
        config(tmp_path, **change)


def test_force_clears_the_old_run_only_once_the_new_one_is_set_up(tmp_path, capsys):
    import yaml

    from stereodistill.checkpoint import save_model
    from stereodistill.cli.main import main
    from stereodistill.models import build_model

    save_model(tmp_path / "teacher", build_model("dsnet", max_disp=16))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "scalars.csv").write_text("step,stage,name,value\n")  # a previous run
    terms = [{"name": "f", "student": "feat.left.s99", "teacher": "feat.left.s4", "loss": "cosine"}]
    run = {**TINY, "output": str(tmp_path / "out"), "teacher": {"checkpoint": str(tmp_path / "teacher")}}
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({**run, "distill": {"terms": terms}}))
    assert main(["distill", str(tmp_path / "d.yaml"), "--force"]) == 2  # a tap the student lacks: found in set-up
    assert "does not offer tap 'feat.left.s99'" in capsys.readouterr().err
    assert (tmp_path / "out" / "scalars.csv").is_file()  # the old run is still there


@pytest.mark.parametrize("weights", [[1.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
def test_supervised_weights_not_one_per_output_are_a_config_error_in_set_up(tmp_path, weights):
    cfg = config(tmp_path, model={"arch": "lean-xs", "max_disp": 16}, supervised={"weights": weights})
    with pytest.raises(ConfigError, match=r"supervised\.weights: lean-xs trains 2 output\(s\), got .*: give one per"):
        Trainer(cfg, distill=False)  # too many: the first ones would go unread
    assert not (tmp_path / "config.yaml").exists()


def test_data_without_a_range_is_valid_only_below_the_models(tmp_path):
    from stereodistill.data.formats import read_pfm, write_pfm
    from stereodistill.data.motorcycle import write_motorcycle

    train = {"dataset": "synthetic", "pairs": 4, "size": [32, 64]}  # scenes drawn up to 48 px, as before
    csv = write_motorcycle(tmp_path / "moto", factor=4)  # ground truth up to about 15 px
    truth = tmp_path / "moto" / "disp0.pfm"
    write_pfm(truth, 2 * read_pfm(truth))  # now up to about 30 px
    val = {"dataset": "pairs", "root": str(csv)}
    run = config(tmp_path / "run", data={**TINY["data"], "train": train, "val": val}, val_samples=1)
    trainer = Trainer(run, distill=False)
    for dataset in (trainer.loader.dataset.dataset, trainer.val_set):
        samples = [dataset[i] for i in range(min(4, len(dataset)))]
        assert all(float(s["disp"][s["valid"]].max()) < 16 for s in samples)  # the model's max_disp
        assert any(float(s["disp"].max()) >= 16 for s in samples)  # there was ground truth beyond it


def test_a_validation_set_without_a_split_is_scored_on_the_evaluation_split_and_the_training_set_is_named(
    tmp_path, capsys
):
    val = {"dataset": "synthetic", "pairs": 1, "size": [32, 64], "max_disp": 16}
    cfg = config(tmp_path / "a", steps=1, data={**TINY["data"], "val": val})
    assert (cfg.data.train.split, cfg.data.val.split) == ("train", "test")  # never the pairs it trains on
    scene_flow = {"dataset": "sceneflow", "root": str(tmp_path)}
    assert config(tmp_path / "b", data={**TINY["data"], "val": scene_flow}).data.val.split == "test"  # its TEST
    monkaa = {**scene_flow, "options": {"subsets": ["monkaa"]}}  # no test frames: its own
    assert config(tmp_path / "b", data={**TINY["data"], "val": monkaa}).data.val.split == "train"
    listed = {**scene_flow, "list_file": str(tmp_path / "val.txt")}  # the list picks the frames, of either split
    assert config(tmp_path / "b", data={**TINY["data"], "val": listed}).data.val.split == "all"
    kitti = config(tmp_path / "b", data={**TINY["data"], "val": {"dataset": "kitti2015", "root": str(tmp_path)}})
    assert kitti.data.val.split == "train"  # KITTI's test split has no ground truth
    Trainer(cfg, distill=False).run()
    assert "warning" not in capsys.readouterr().err
    same = config(tmp_path / "c", steps=1, data={**TINY["data"], "val": {**val, "split": "train"}})
    Trainer(same, distill=False).run()
    assert "warning: data.val is the training set itself (synthetic, split train)" in capsys.readouterr().err


def test_a_validation_set_with_no_pixel_to_score_is_refused_before_the_first_step(tmp_path, capsys):
    from stereodistill.data.formats import write_image, write_pfm

    rng = np.random.default_rng(0)
    write_image(tmp_path / "l.png", rng.random((32, 64, 3)))
    write_image(tmp_path / "r.png", rng.random((32, 64, 3)))
    write_pfm(tmp_path / "d.pfm", np.full((32, 64), 20.0, np.float32))  # all beyond the network's 16 px
    (tmp_path / "pairs.csv").write_text("left,right,disp\nl.png,r.png,d.pfm\n")
    val = {"dataset": "pairs", "root": str(tmp_path / "pairs.csv")}
    with pytest.raises(DataError, match=r"data.val: no pair has a valid ground-truth pixel below 16 px"):
        Trainer(config(tmp_path / "run", data={**TINY["data"], "val": val}), distill=False)
    assert not (tmp_path / "run" / "checkpoints").exists()
    within = {**val, "max_disp": 24}  # its own range: the pixels count, and the log says they lie beyond the network's
    Trainer(config(tmp_path / "run2", steps=1, data={**TINY["data"], "val": within}), distill=False)
    assert "note: data.val.max_disp is 24 px, beyond model.max_disp (16)" in capsys.readouterr().err


def test_a_network_that_cannot_train_on_one_pair_at_this_crop_is_refused_before_any_step(tmp_path):
    one = {**TINY["data"], "batch_size": 1}
    refused = r"^psmnet cannot train on one pair at a time at a crop of 32x64: .* data.batch_size 2 or more \(2 per"
    with pytest.raises(ConfigError, match=refused):
        Trainer(config(tmp_path / "a", model={"arch": "psmnet", "max_disp": 16}, data=one), distill=False)
    assert not (tmp_path / "a").exists()
    Trainer(config(tmp_path / "b", data=one), distill=False)  # dsnet can
    Trainer(config(tmp_path / "c", model={"arch": "psmnet", "max_disp": 16}, data=one, freeze_bn=True), distill=False)


def test_a_teacher_setting_its_architecture_cannot_take_is_named_as_the_teachers(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "release.pth")
    teacher = {"original": str(tmp_path / "release.pth"), "arch": "fast-acvnet-plus", "max_disp": 48}
    distill = {"terms": [{"name": "pseudo", "student": "disparity", "teacher": "disparity", "loss": "smooth_l1"}]}
    with pytest.raises(ConfigError, match=r"^teacher: fast-acvnet-plus: max_disp must be a multiple of 32"):
        Trainer(config(tmp_path / "run", teacher=teacher, distill=distill), distill=True)

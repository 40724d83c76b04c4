"""Cost of one distillation step against its parts measured separately.

Usage: ``python benchmarks/bench_distill_step.py [--config configs/dsnet_paper.yaml] [--size 128x256]
[--max-disp 96] [--batch 2] [--repeats 5] [--device cpu] [--teacher-arch dsnet-teacher]``.

Times, on the same batch: (a) the teacher's forward with the taps the config's terms need
(eval, no_grad); (b) the student's forward with its taps plus backward of its supervised loss;
(c) the engine's whole step (``Trainer.compute_losses``, backward, optimiser step). The engine's
overhead is (c) / (a + b); the target is ≤ 1.25. The teacher gets random weights (speed does not
depend on them); medians after warm-up, with device synchronisation on CUDA.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from stereodistill.checkpoint import save_model
from stereodistill.cli.args import size
from stereodistill.cli.train_cmd import load_run_config
from stereodistill.distill.losses import multi_output_loss
from stereodistill.evaluate.timing import median_ms
from stereodistill.models import build_model
from stereodistill.train.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/dsnet_paper.yaml")
    parser.add_argument("--size", type=size, default=(128, 256))
    parser.add_argument("--max-disp", type=int, default=96)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--teacher-arch", default="dsnet-teacher")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = args.size
    with tempfile.TemporaryDirectory() as tmp:
        save_model(Path(tmp) / "teacher", build_model(args.teacher_arch, max_disp=args.max_disp))
        overrides = [
            f"output={tmp}/run",
            f"device={args.device}",
            f"teacher.checkpoint={tmp}/teacher",
            "teacher.original=null",
            f"model.max_disp={args.max_disp}",
            "data.train.dataset=synthetic",
            f"data.train.pairs={args.batch}",
            f"data.train.size=[{height}, {width}]",
            f"data.train.max_disp={args.max_disp}",
            "data.val=null",
            f"data.crop=[{height}, {width}]",
            f"data.batch_size={args.batch}",
            "stages=[]",
        ]
        config = load_run_config(args.config, overrides)
        trainer = Trainer(config, distill=True)
        device = trainer.device
        batch = next(iter(trainer.loader))
        left, right = batch["left"].to(device), batch["right"].to(device)
        gt, valid = batch["disp"].to(device), batch["valid"].to(device)
        student, teacher = trainer.unit.student, trainer.teacher
        stage = trainer.stage_at(0)

        def teacher_forward() -> None:
            with torch.no_grad():
                teacher(left, right, taps=trainer.teacher_taps)

        def student_step() -> None:
            out = student(left, right, taps=trainer.student_taps)
            multi_output_loss(out.predictions, gt, valid, trainer.loss_weights, config.supervised.loss).backward()
            trainer.optimizer.zero_grad(set_to_none=True)

        def engine_step() -> None:
            trainer.optimizer.zero_grad(set_to_none=True)
            total = trainer.compute_losses(batch, stage, 0, 0.0)[0]
            total.backward()
            trainer.optimizer.step()

        t_teacher = median_ms(teacher_forward, device, args.repeats)
        t_student = median_ms(student_step, device, args.repeats)
        t_engine = median_ms(engine_step, device, args.repeats)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} thread(s)"
    print(
        f"{args.config}: {args.teacher_arch} -> {config.model.arch}, batch {args.batch}, "
        f"{height}x{width}, max disparity {args.max_disp}, {len(config.distill.terms)} terms, {name}"
    )
    print(f"  (a) teacher forward (taps, no_grad)          {t_teacher:8.1f} ms")
    print(f"  (b) student forward + backward (supervised)  {t_student:8.1f} ms")
    print(f"  (c) engine distillation step                 {t_engine:8.1f} ms")
    print(f"  overhead (c) / (a + b) = {t_engine / (t_teacher + t_student):.3f}  (target ≤ 1.25)")


if __name__ == "__main__":
    main()

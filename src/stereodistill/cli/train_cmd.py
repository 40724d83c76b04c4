"""``stereodistill train`` (supervised) and ``stereodistill distill`` (teacher → student)."""

from __future__ import annotations

import argparse
import os


def register(commands: argparse._SubParsersAction) -> None:
    for name, distill, text in (
        ("train", False, "supervised training (teacher pre-training, the no-distillation baseline)"),
        ("distill", True, "distil a teacher (from a checkpoint) into a student"),
    ):
        parser = commands.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]}. The YAML config is validated before any work starts; "
            "KEY=VALUE items (dotted keys, YAML values) override it. Launch with torchrun for DDP.",
        )
        parser.add_argument("config", help="run config (YAML)")
        parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. steps=2 optim.lr=2e-4")
        parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
        parser.add_argument(
            "--allow-changes",
            action="store_true",
            help="with --resume: accept a config that differs from the run's in what does not change the model "
            "(learning rate, steps, term weights; listed and recorded in config.yaml)",
        )
        parser.add_argument(
            "--force", action="store_true", help="start over: clear the output folder if it holds a run"
        )
        parser.set_defaults(handler=run, distill=distill)


def load_run_config(path: str, overrides: list[str]):
    from stereodistill.config import apply_overrides, from_dict, load_yaml
    from stereodistill.train.config import RunConfig

    return from_dict(RunConfig, apply_overrides(load_yaml(path), overrides))


def run(args: argparse.Namespace) -> int:
    from stereodistill.errors import ConfigError
    from stereodistill.train.trainer import Trainer

    if args.force and args.resume:
        raise ConfigError("--force starts over and --resume continues: give one of them")
    if args.allow_changes and not args.resume:
        raise ConfigError("--allow-changes applies to --resume")
    config = load_run_config(args.config, args.overrides)
    try:
        trainer = Trainer(
            config, distill=args.distill, resume=args.resume, force=args.force, allow_changes=args.allow_changes
        )
        result = trainer.run()
    finally:  # a process group left open is a warning per process at exit
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if os.environ.get("RANK", "0") == "0":  # one summary per run, not per DDP process
        print(summary_line(config, result))
    return 0


def summary_line(config, result: dict) -> str:
    """What a run did, in one line: network, steps, time, where the model is, validation EPE."""
    if result.get("stopped"):
        return f"stopped at step {result['step']}; continue with --resume"
    epe = result.get("metrics", {}).get("epe")
    validation = f"; validation EPE {epe:.3f} px" if epe is not None else ""
    if result.get("finished"):
        return f"the run was already finished at step {result['step']}: {result['model']}{validation}"
    trained = result.get("trained_steps", result["step"])
    first = result["step"] - trained + 1  # a resumed run: from its checkpoint on
    span = f"{trained} steps" if first == 1 else f"step {first}" if trained == 1 else f"steps {first}-{result['step']}"
    return f"trained {config.model.arch} for {span} in {result.get('seconds', 0):.0f} s: {result['model']}{validation}"

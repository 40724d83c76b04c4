"""``stereodistill adapt``: a student fine-tuned on the user's own unlabeled pairs with a teacher's
filtered pseudo-labels (:mod:`stereodistill.experiments.adapt`)."""

from __future__ import annotations

import argparse

from stereodistill.cli.args import add_device, non_negative_float, positive_float, positive_int, size


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "adapt",
        help="adapt a student to your own unlabeled stereo pairs with a teacher's pseudo-labels",
        description="Label the pairs with TEACHER once (cached in OUT/pseudo), keep its pixels that pass a photometric "
        "gate (where the student's own disparity explains the pair better, it stays the label) and, if asked, a "
        "left-right consistency check and a confidence threshold, and fine-tune STUDENT on the labels (--clamp: a "
        "truncated loss). "
        "OUT is the run folder: OUT/model, scalars.csv, kept.json (kept pixels per pair), report.html. Ground truth "
        "in the list is never used for training, only scored before and after (OUT/adapt.json).",
    )
    parser.add_argument(
        "teacher",
        help="the teacher: a stereodistill checkpoint, a release with --teacher-arch, or sgbm (classical: "
        "its unmatched pixels filter its labels)",
    )
    parser.add_argument("student", help="the student: a stereodistill checkpoint, or an architecture (from scratch)")
    parser.add_argument("--unlabeled", required=True, help="a pairs CSV, or a folder holding left/ and right/")
    parser.add_argument("--out", required=True, help="output run folder (new or empty; --force clears a previous run)")
    parser.add_argument(
        "--config",
        help="a YAML of these settings (steps, lr, crop, batch_size, lr_threshold, confidence, gate, clamp, labels, "
        "photometric) and `run:`, "
        "merged into the student's run config (e.g. {amp: bf16, data: {color_jitter: false}}; what the settings "
        "above decide, such as steps or optim.lr, is refused there); flags win",
    )
    parser.add_argument("--steps", type=positive_int, help="training steps (default 300)")
    parser.add_argument("--lr", type=positive_float, help="peak learning rate (default 1e-3)")
    parser.add_argument("--crop", type=size, help="training crop HxW (default 192x320)")
    parser.add_argument(
        "--lr-threshold",
        type=float,
        help="left-right agreement in px; inf turns the check off (default inf: the photometric gate "
        "filters better, docs/results.md)",
    )
    parser.add_argument("--confidence", type=float, help="minimum peak probability; 0 turns the check off (default 0)")
    parser.add_argument(
        "--gate",
        type=int,
        help="px window of the photometric gate: a teacher label stands only where it reconstructs the pair "
        "(the right view warped to the left) better than the student's own disparity does over that window; "
        "elsewhere the student's own disparity is the label. 0 turns it off (default 5)",
    )
    parser.add_argument(
        "--clamp",
        type=non_negative_float,
        help="px: pixels the student predicts further than this from their label are left out of the loss; "
        "0, the default, keeps them all (measured: 3 px and 8 px both did worse, docs/results.md)",
    )
    parser.add_argument(
        "--photometric",
        type=non_negative_float,
        help="weight of a photometric loss (the left view against the right view warped by the student's own "
        "disparity, SSIM + L1, and smoothness): it needs no labels; alone it harmed occluded and textureless "
        "regions, beside the gated labels it gained 0.01-0.02 px (docs/results.md); 0 turns it off (default 0)",
    )
    parser.add_argument(
        "--labels",
        type=non_negative_float,
        help="weight of the pseudo-label loss; 0: the photometric loss alone (default 1)",
    )
    parser.add_argument("--teacher-arch", help="the architecture of an original release given as TEACHER")
    parser.add_argument(
        "--teacher-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="constructor option of --teacher-arch, e.g. max_disp=192 or align_corners=true",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out, and list, images without their other view, unreadable images and pairs whose views "
        "differ in size (default: an error listing them, before anything is written)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--force", action="store_true", help="start over: clear OUT if it holds a run")
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT from its last checkpoint (every 100 steps), reusing its labels",
    )
    parser.add_argument(
        "--allow-changes", action="store_true", help="with --resume: accept settings that differ from the run's"
    )
    add_device(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stereodistill.cli.data_cmd import parse_options
    from stereodistill.errors import ConfigError
    from stereodistill.experiments.adapt import AdaptConfig, PseudoLabelSettings, adapt, load_adapt_config

    if args.allow_changes and not args.resume:
        raise ConfigError("--allow-changes applies to --resume")
    config = load_adapt_config(args.config) if args.config else AdaptConfig()
    for key in ("steps", "lr", "crop", "lr_threshold", "confidence", "gate", "clamp", "labels", "photometric"):
        if getattr(args, key) is not None:  # a flag given on the command line wins over the file
            setattr(config, key, getattr(args, key))
    report = adapt(
        args.teacher,
        args.student,
        args.unlabeled,
        Path(args.out),
        steps=config.steps,
        lr=config.lr,
        crop=config.crop,
        batch_size=config.batch_size,
        settings=PseudoLabelSettings(lr_threshold=config.lr_threshold, confidence=config.confidence, gate=config.gate),
        clamp=config.clamp or None,
        labels=config.labels,
        photometric=config.photometric,
        run=config.run,
        teacher_arch=args.teacher_arch,
        teacher_options=parse_options(args.teacher_option),
        skip_bad=args.skip_bad,
        force=args.force,
        resume=args.resume,
        allow_changes=args.allow_changes,
        device=args.device,
        config_file=args.config,
        log=lambda line: print(line, flush=True),
    )
    mean_kept = sum(k["kept"] for k in report["kept"]) / len(report["kept"])
    from_teacher = sum(k["teacher"] for k in report["kept"]) / len(report["kept"])
    print(
        f"adapted: {report['model']} ({100 * mean_kept:.1f} % of pixels kept as labels on average, "
        f"{100 * from_teacher:.1f} % from the teacher)"
    )
    return 0

"""``stereodistill adapt``: a student fine-tuned on the user's own unlabeled pairs with a teacher's
filtered pseudo-labels (:mod:`stereodistill.experiments.adapt`)."""

from __future__ import annotations

import argparse

from stereodistill.cli.args import add_device, positive_int, size


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "adapt",
        help="adapt a student to your own unlabeled stereo pairs with a teacher's pseudo-labels",
        description="Label the pairs with TEACHER once (cached), keep the pixels that pass a left-right consistency "
        "check and a confidence threshold, and fine-tune STUDENT on them. Ground truth in the list is never used "
        "for training, only scored before and after (OUT/adapt.json). Writes OUT/pseudo.csv (the labels), "
        "OUT/kept.json and the run in OUT/run (model, scalars).",
    )
    parser.add_argument("teacher", help="the teacher: a stereodistill checkpoint")
    parser.add_argument("student", help="the student: a stereodistill checkpoint to start from")
    parser.add_argument("--unlabeled", required=True, help="a pairs CSV, or a folder holding left/ and right/")
    parser.add_argument("--out", required=True, help="output folder (new or empty; --force clears it)")
    parser.add_argument("--steps", type=positive_int, default=300, help="training steps (default 300)")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    parser.add_argument("--crop", type=size, default=(192, 320), help="training crop HxW (default 192x320)")
    parser.add_argument("--lr-threshold", type=float, default=1.0, help="left-right agreement in px (default 1)")
    parser.add_argument("--confidence", type=float, default=0.3, help="minimum peak probability (default 0.3)")
    parser.add_argument("--force", action="store_true", help="clear OUT first")
    add_device(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stereodistill.data.pairing import pairs_csv
    from stereodistill.experiments.adapt import PseudoLabelSettings, adapt

    out = Path(args.out)
    unlabeled = Path(args.unlabeled)
    if unlabeled.is_dir():  # a folder of pairs: list it first, beside the run
        out.parent.mkdir(parents=True, exist_ok=True)
        listed = out.with_name(out.name + ".pairs.csv")
        pairs_csv(unlabeled / "left", unlabeled / "right", listed)
        unlabeled = listed
    report = adapt(
        args.teacher,
        args.student,
        str(unlabeled),
        out,
        steps=args.steps,
        lr=args.lr,
        crop=args.crop,
        settings=PseudoLabelSettings(lr_threshold=args.lr_threshold, confidence=args.confidence),
        force=args.force,
        device=args.device,
        log=lambda line: print(line, flush=True),
    )
    mean_kept = sum(k["kept"] for k in report["kept"]) / len(report["kept"])
    print(f"adapted: {report['model']} ({100 * mean_kept:.1f} % of pixels kept as labels on average)")
    return 0

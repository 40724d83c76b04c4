"""``stereodistill models`` (inspect the zoo) and ``stereodistill convert`` (import an original checkpoint)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stereodistill.cli.args import max_disp, size


def register(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser(
        "models",
        help="list every network with parameters, GMACs and taps",
        description="List the zoo: parameters (modules used in the forward pass), MACs of one eval forward "
        "at batch 1 (torch.utils.flop_counter, MACs = FLOPs / 2) and the taps each network offers.",
    )
    models.add_argument("--size", type=size, default=(256, 512), help="input HxW for MACs and tap shapes")
    models.add_argument("--max-disp", type=max_disp, default=192, help="maximum disparity (default 192)")
    models.add_argument("--no-taps", action="store_true", help="do not list the taps")
    models.set_defaults(handler=run_models)

    convert = commands.add_parser(
        "convert",
        help="import an original-repository checkpoint as a stereodistill checkpoint",
        description="Load a checkpoint saved by an architecture's original code (torch.load with "
        "weights_only=True: nothing is unpickled) and write it as safetensors + JSON.",
    )
    convert.add_argument("--arch", required=True, help="architecture of the checkpoint (see `stereodistill models`)")
    convert.add_argument("input", help="original checkpoint (.tar/.pth/.ckpt)")
    convert.add_argument("output", help="output path; writes OUTPUT.safetensors and OUTPUT.json")
    convert.add_argument("--max-disp", type=max_disp, default=192, help="the model's maximum disparity")
    convert.add_argument("--force", action="store_true", help="replace an existing checkpoint at OUTPUT")
    convert.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="further constructor option of the architecture, e.g. align_corners=true for PSMNet's releases",
    )
    convert.set_defaults(handler=run_convert)


def run_models(args: argparse.Namespace) -> int:
    from stereodistill.errors import ConfigError
    from stereodistill.models import build_model, list_models
    from stereodistill.models.summary import summarize

    height, width = args.size
    print(
        f"{'architecture':<16}{'params':>12}{'release':>12}{'GMACs':>10}   "
        f"at {height}x{width}, max disparity {args.max_disp}; release: as the original code counts them, at "
        "the release's own max disparity"
    )
    for arch in list_models():  # eval mode: the shapes a deployed network has
        try:
            model = build_model(arch, max_disp=args.max_disp)
        except ConfigError as exc:  # e.g. CFNet needs a multiple of 32: say so and list the others
            print(f"{arch:<16}{'-':>12}{'-':>12}{'-':>10}   not at this max disparity: {exc}")
            continue
        summary = summarize(model, height, width)
        release = "-" if model.release_params is None else f"{model.release_params:,}"
        print(f"{arch:<16}{summary.params:>12,}{release:>12}{summary.gmacs:>10.1f}")
        if not args.no_taps:
            for name, shape in summary.taps.items():
                print(f"    {name:<18}{'×'.join(str(v) for v in shape)}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from stereodistill.checkpoint import check_writable, save_model
    from stereodistill.cli.data_cmd import parse_options
    from stereodistill.errors import ConfigError
    from stereodistill.models.import_original import import_checkpoint

    if Path(args.output).is_dir():
        raise ConfigError(f"{args.output} is a folder: name the checkpoint to write in it (e.g. {args.output}/model)")
    existing = [str(path) for path in check_writable(args.output) if path.exists()]  # before the import
    if existing and not args.force:
        raise ConfigError(f"{existing[0]} exists: --force to replace it, or name another output")
    options = parse_options(args.option)
    if "max_disp" in options:
        raise ConfigError("--option max_disp: the range is --max-disp")
    try:
        model = import_checkpoint(args.input, arch=args.arch, max_disp=args.max_disp, **options)
    except TypeError as exc:
        raise ConfigError(f"bad --option for {args.arch}: {exc}") from None
    weights = save_model(args.output, model, source={"original_checkpoint": str(args.input)})
    print(f"imported {args.input} as {args.arch}; wrote {weights} and {weights.with_suffix('.json')}")
    return 0

"""The ``stereodistill`` command: one parser, one sub-module per command group.

User errors (bad files, bad options) print one line naming the problem and exit with status 2;
they never show a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from stereodistill import __version__
from stereodistill.cli import (
    ablate_cmd,
    adapt_cmd,
    bench_cmd,
    data_cmd,
    eval_cmd,
    export_cmd,
    infer_cmd,
    models_cmd,
    quickstart_cmd,
    train_cmd,
)
from stereodistill.errors import SharedRefusal, StereoDistillError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stereodistill",
        description="Distil large stereo-matching networks into lean, fast students.",
    )
    parser.add_argument("--version", action="version", version=f"stereodistill {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data_cmd.register(commands)
    models_cmd.register(commands)
    eval_cmd.register(commands)
    infer_cmd.register(commands)
    bench_cmd.register(commands)
    export_cmd.register(commands)
    train_cmd.register(commands)
    ablate_cmd.register(commands)
    adapt_cmd.register(commands)
    quickstart_cmd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may come anywhere, also after flags (`train CFG --resume steps=20`).
    if extra and hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.handler(args) or 0)
    except StereoDistillError as exc:
        if not isinstance(exc, SharedRefusal):  # rank 0 says a refusal every process shares, once
            rank = os.environ.get("RANK", "0")
            print(f"stereodistill: error{f' (rank {rank})' if rank != '0' else ''}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stereodistill: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except OSError as exc:  # the system refused a file: no permission, a full disk, a folder where a file goes
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"stereodistill: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


def entry() -> None:
    """The console script: process-wide numeric settings first (:mod:`stereodistill.runtime`), then
    :func:`main`. ``main`` itself leaves global state alone, so it can be called from Python."""
    from stereodistill.runtime import configure_cpu_math

    configure_cpu_math()
    sys.exit(main())


if __name__ == "__main__":
    entry()

"""``stereodistill export``: a checkpoint as an ONNX graph, checked in ONNX Runtime before it is kept."""

from __future__ import annotations

import argparse

from stereodistill.cli.args import check_output, positive_float, positive_int, size
from stereodistill.errors import ConfigError
from stereodistill.fileio import write_json


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="export a checkpoint to ONNX (checked against PyTorch in ONNX Runtime)",
        description="Export CHECKPOINT as an ONNX graph for fixed-size 1x3xHxW inputs in [0, 1] (normalisation "
        "and padding are inside). The graph is run in ONNX Runtime on a synthetic pair and compared with "
        "PyTorch; it is kept only if the disparities agree within --tolerance. Prints both CPU latencies. "
        "With --int8, also writes OUT.int8.onnx (ONNX Runtime static quantisation calibrated on synthetic pairs) "
        "and reports its latency and its EPE change on held-out synthetic pairs. "
        "Needs the optional extra: pip install 'stereodistill[export]' (in a clone: pip install -e '.[export]').",
    )
    parser.add_argument("checkpoint", help="a stereodistill checkpoint (NAME or NAME.safetensors)")
    parser.add_argument("--onnx", required=True, help="output .onnx file")
    parser.add_argument("--size", type=size, default=(256, 512), help="input HxW the graph takes (default 256x512)")
    parser.add_argument(
        "--tolerance", type=positive_float, default=0.01, help="max |disparity difference| in px (0.01)"
    )
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed runs for the latencies (default 5)")
    parser.add_argument(
        "--threads", type=positive_int, help="CPU threads for both runtimes (default: the cores this process may use)"
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write an int8 graph beside the float one (ONNX -> NAME.int8.onnx) and report its speed and EPE",
    )
    parser.add_argument("--calib-pairs", type=positive_int, help="synthetic pairs calibrating --int8 (default 8)")
    parser.add_argument("--eval-pairs", type=positive_int, help="held-out synthetic pairs scoring --int8 (default 4)")
    parser.add_argument("--json", dest="json_out", help="also write the check and latencies here")
    parser.set_defaults(handler=run)


#: Seeds of the synthetic pairs: the checked example is seed 0; calibration and held-out pairs are
#: (stream, i) with streams of their own, so no pair is used twice.
CALIBRATION_STREAM = 1
HELD_OUT_STREAM = 2


def example_pair(height: int, width: int, max_disp: int):
    """A synthetic pair with real structure (random noise would exercise the graph less)."""
    from stereodistill.deploy.onnx_export import synthetic_pairs

    ((left, right, _),) = synthetic_pairs(height, width, max_disp, [0])
    return left, right


def quantize(args: argparse.Namespace, model):
    """The --int8 half of ``run``: quantise the checked float graph, then print and return the check."""
    from stereodistill.deploy.onnx_export import int8_path, quantize_int8, synthetic_pairs

    height, width = args.size
    out = int8_path(args.onnx)
    print(f"quantising to int8 ({args.calib_pairs} calibration pairs) ...")
    calibration = synthetic_pairs(
        height, width, model.max_disp, [(CALIBRATION_STREAM, i) for i in range(args.calib_pairs)]
    )
    held_out = synthetic_pairs(height, width, model.max_disp, [(HELD_OUT_STREAM, i) for i in range(args.eval_pairs)])
    check = quantize_int8(
        model,
        args.onnx,
        out,
        [(left, right) for left, right, _ in calibration],
        held_out,
        repeats=args.repeats,
        threads=args.threads,
    )
    print(
        f"wrote {out}: ONNX Runtime, {check.threads} threads, median of {args.repeats}: float "
        f"{check.onnxruntime_float_ms:.1f} ms, int8 {check.onnxruntime_int8_ms:.1f} ms "
        f"(speed-up {check.speedup:.2f}x)"
    )
    print(
        f"EPE on {check.eval_pairs} held-out synthetic pairs: PyTorch {check.torch_epe_px:.3f} px, "
        f"ONNX float {check.float_epe_px:.3f} px, ONNX int8 {check.int8_epe_px:.3f} px"
    )
    print(f"int8 EPE change: {check.epe_change_px:+.3f} px")
    return check


def run(args: argparse.Namespace) -> int:
    import sys

    from stereodistill.checkpoint import checkpoint_paths, load_model
    from stereodistill.deploy.onnx_export import export_onnx, int8_path, require_runtime
    from stereodistill.runtime import available_cpus

    args.threads = args.threads or available_cpus()
    if not args.int8:
        given = [
            flag for flag, value in (("--calib-pairs", args.calib_pairs), ("--eval-pairs", args.eval_pairs)) if value
        ]
        if given:
            raise ConfigError(f"{' and '.join(given)}: for the int8 graph, which only --int8 makes")
    args.calib_pairs = args.calib_pairs or 8
    args.eval_pairs = args.eval_pairs or 4
    if min(args.size) < 8:  # the graph is checked on a rendered pair, which needs room for a scene
        raise ConfigError(f"--size {args.size[0]}x{args.size[1]}: export checks its graph on an 8x8 pair at least")
    require_runtime()
    reads = checkpoint_paths(args.checkpoint)
    check_output(args.onnx, "--onnx", reads)
    if args.int8:
        check_output(int8_path(args.onnx), "--int8 output", reads)
    graphs = [args.onnx, *([int8_path(args.onnx)] if args.int8 else [])]
    check_output(args.json_out, "--json", [*reads, *graphs])  # the record never replaces a graph it describes
    model = load_model(args.checkpoint)
    height, width = args.size
    print(f"exporting {model.arch} for 1x3x{height}x{width} inputs to {args.onnx} ...")
    check = export_onnx(
        model,
        args.onnx,
        example_pair(height, width, model.max_disp),
        tolerance_px=args.tolerance,
        repeats=args.repeats,
        threads=args.threads,
    )
    print(
        f"wrote {args.onnx}: ONNX Runtime vs PyTorch max |diff| {check.max_abs_diff_px:.2e} px "
        f"(mean {check.mean_abs_diff_px:.2e}, tolerance {args.tolerance})"
    )
    print(
        f"CPU latency, {check.threads} threads, median of {args.repeats}: PyTorch {check.torch_ms:.1f} ms, "
        f"ONNX Runtime {check.onnxruntime_ms:.1f} ms"
    )
    int8 = quantize(args, model) if args.int8 else None
    if int8 is None and int8_path(args.onnx).is_file():  # made from the graph just replaced, or another
        print(
            f"warning: {int8_path(args.onnx)} beside it is from an earlier export, not from this graph; "
            "delete it, or export with --int8 to replace it",
            file=sys.stderr,
        )
    if args.json_out:
        record = {"checkpoint": args.checkpoint, "arch": model.arch, "onnx": args.onnx, "size": [height, width]}
        record.update(check.to_dict())
        if int8 is not None:
            record["int8"] = int8.to_dict()
        write_json(args.json_out, record)
    return 0

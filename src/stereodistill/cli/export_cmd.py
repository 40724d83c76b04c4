"""``stereodistill export``: a checkpoint as an ONNX graph, checked in ONNX Runtime before it is kept."""

from __future__ import annotations

import argparse
import json

from stereodistill.cli.args import positive_int, size
from stereodistill.fileio import write_text_atomic


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="export a checkpoint to ONNX (checked against PyTorch in ONNX Runtime)",
        description="Export CHECKPOINT as an ONNX graph for fixed-size 1x3xHxW inputs in [0, 1] (normalisation "
        "and padding are inside). The graph is run in ONNX Runtime on a synthetic pair and compared with "
        "PyTorch; it is kept only if the disparities agree within --tolerance. Prints both CPU latencies. "
        "Needs the optional extra: pip install 'stereodistill[export]'.",
    )
    parser.add_argument("checkpoint", help="a stereodistill checkpoint (NAME or NAME.safetensors)")
    parser.add_argument("--onnx", required=True, help="output .onnx file")
    parser.add_argument("--size", type=size, default=(256, 512), help="input HxW the graph takes (default 256x512)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="max |disparity difference| in px (0.01)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed runs for the latencies (default 5)")
    parser.add_argument("--threads", type=positive_int, default=2, help="CPU threads for both runtimes (default 2)")
    parser.add_argument("--json", dest="json_out", help="also write the check and latencies here")
    parser.set_defaults(handler=run)


def example_pair(height: int, width: int, max_disp: int):
    """A synthetic pair with real structure (random noise would exercise the graph less)."""
    import torch

    from stereodistill.data.synthetic import SynthConfig, generate_pair

    config = SynthConfig(height=height, width=width, max_disp=max(4, min(max_disp, width // 4)))
    pair = generate_pair(config, seed=0)
    return tuple(torch.from_numpy(x.transpose(2, 0, 1).copy())[None] for x in (pair.left, pair.right))


def run(args: argparse.Namespace) -> int:
    from stereodistill.checkpoint import load_model
    from stereodistill.deploy.onnx_export import export_onnx, require_runtime

    require_runtime()
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
    if args.json_out:
        record = {"checkpoint": args.checkpoint, "arch": model.arch, "onnx": args.onnx, "size": [height, width]}
        write_text_atomic(args.json_out, json.dumps({**record, **check.to_dict()}, indent=2) + "\n")
    return 0

"""``ge2e export --format onnx|torchscript MODEL OUT``: a deployable encoder file (frames -> d-vectors)."""

from __future__ import annotations

import argparse

from ge2e.cli._preflight import add_mkdir_option, check_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a speaker encoder to ONNX or TorchScript (optionally int8)",
        description="Export a ge2e checkpoint as an ONNX or TorchScript encoder mapping (B, T, n_mels) log-mel "
        "frames to (B, D) unit-norm d-vectors, with its audio and inference settings stored in the file. "
        "The export is checked against PyTorch on probe frames.",
    )
    p.add_argument("model", help="ge2e checkpoint (.pt) to export; its calibration (.json beside it) goes with it")
    p.add_argument("out", help="output file, e.g. encoder.onnx")
    add_mkdir_option(p)
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="default: onnx")
    p.add_argument("--int8", action="store_true", help="dynamic int8 quantisation of the LSTM and linear weights")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version, >= 14 (default: 17)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ge2e.errors import Ge2eError
    from ge2e.export import PARITY_COSINE, export
    from ge2e.model import SpeakerEncoder
    from ge2e.pretrained import load_model

    check_output(args, args.out)  # a folder, or a place that cannot be written: say so before exporting
    if args.opset < 14:
        raise Ge2eError(f"--opset {args.opset}: ONNX export needs opset 14 or newer")
    model = load_model(args.model)
    if not isinstance(model.encoder, SpeakerEncoder):
        raise Ge2eError(f"{args.model}: already an exported encoder; export its .pt checkpoint")
    report = export(model.encoder, args.out, args.format, args.int8, args.opset, model.calibration)
    if not args.int8 and report.min_cosine < PARITY_COSINE:
        raise Ge2eError(
            f"{report.path}: exported encoder disagrees with PyTorch (cosine {report.min_cosine:.6f} < {PARITY_COSINE})"
        )
    kind = "int8" if args.int8 else "float32"
    print(
        f"wrote {report.path} ({args.format}, {kind}, {report.size_bytes / 1e6:.1f} MB); "
        f"cosine to the PyTorch encoder on probe frames: min {report.min_cosine:.6f}"
    )
    return 0

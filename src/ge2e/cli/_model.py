"""The ``--model`` and ``--threads`` options every command that embeds audio shares, and the one way it opens
its model: :func:`ge2e.pretrained.load_model` (checkpoints, the bundled model, exported ONNX/TorchScript files)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ge2e.errors import Ge2eError

if TYPE_CHECKING:
    from ge2e.inference import Inference

MODEL_HELP = (
    "model: a checkpoint (.pt) or an encoder written by `ge2e export` (.onnx, .ts); default: the bundled one, as "
    "its int8 ONNX export where onnxruntime is installed"
)
# One thread by default: on a 2-core machine shared with other work, two threads made `ge2e embed` 4x slower than
# one (benchmarks/embed.py, docs/performance.md); more threads pay off only on idle cores, so they are opt-in.
DEFAULT_THREADS = 1


def add_model_options(p: argparse.ArgumentParser) -> None:
    from ge2e.decoding import DEFAULT_MAX_SECONDS

    p.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    p.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULT_MAX_SECONDS,
        metavar="S",
        help=f"refuse audio longer than S seconds, from the file header before decoding where it says the length "
        f"(default {DEFAULT_MAX_SECONDS:g}; docs/usage.md, What audio is accepted)",
    )
    p.add_argument(
        "--float32",
        action="store_true",
        help="run the bundled model as its float32 PyTorch checkpoint, not its int8 ONNX export (without --model)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        metavar="N",
        help=f"CPU threads of the encoder and front end (default {DEFAULT_THREADS}; the VAD always uses one)",
    )


def set_threads(threads: int) -> None:
    """Apply ``--threads`` to PyTorch; ONNX encoders opened afterwards take the same count."""
    if threads < 1:
        raise Ge2eError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def open_model(args: argparse.Namespace) -> Inference:
    """Set the thread count, then load ``--model`` (or the bundled model, in float32 with ``--float32``), decoding
    within ``--max-seconds``."""
    set_threads(args.threads)
    from ge2e.decoding import Limits
    from ge2e.pretrained import load_model

    limits = Limits(max_seconds=args.max_seconds)  # checked before loading: a bad value costs no model load
    if args.model is None:
        return load_model(int8=False if args.float32 else None).with_limits(limits)
    if args.float32:
        raise Ge2eError("--float32 chooses the bundled model's form; a --model file runs as it was saved")
    return load_model(args.model).with_limits(limits)


def threshold_origin_line(model: Inference, given: float | None) -> str:
    """What ``verify`` and ``identify`` print about their threshold: ``--threshold``, or the model's calibration
    (which criterion on which data), so that a decision can be read against the data it was tuned on."""
    if given is not None:
        return f"threshold {given:.3f} set by --threshold (the model's calibration is not used)"
    from ge2e.pretrained import threshold_origin

    return threshold_origin(model)


def short_speech_line(seconds: float) -> str:
    """What ``verify`` and ``identify`` print under a score from a test utterance flagged short."""
    from ge2e.inference import SHORT_SPEECH_SECONDS

    return (
        f"short utterance: {seconds:.2f} s of speech (under {SHORT_SPEECH_SECONDS:g} s), scored all the same, but at "
        "this length the score errs far more often than on sentences (docs/usage.md, Short utterances)"
    )

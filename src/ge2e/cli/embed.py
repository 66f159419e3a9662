"""``ge2e embed DIR_OR_FILES... --out emb.npz``: d-vectors of many audio files into one .npz file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from ge2e.cli._model import add_model_options, open_model
from ge2e.cli._preflight import add_mkdir_option, check_output, report_skipped
from ge2e.errors import Ge2eError, printable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="compute d-vectors of audio files into an .npz file",
        description="Embed every audio file given (folders are searched recursively) with the speaker encoder. "
        "The .npz holds 'paths' (U,) and 'embeddings' (U, D) float32 unit-norm rows. Files that cannot be used "
        "are skipped and listed.",
    )
    p.add_argument("inputs", nargs="+", metavar="DIR_OR_FILE", help="audio files and/or folders")
    p.add_argument("--out", required=True, metavar="NPZ", help="output file, e.g. emb.npz")
    add_mkdir_option(p)
    add_model_options(p)
    p.add_argument("--batch-size", type=int, default=32, help="utterances per batch (default 32)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# d-vector (at most 256 float32) and path of one file in the .npz, generously: enough free disk is checked first
NPZ_BYTES_PER_FILE = 2048


def collect_audio(inputs: list[str]) -> list[Path]:
    """Audio files named directly or found under folders (recursive, sorted, hidden entries ignored).

    Anything named, or audio-named in a folder, that is not a regular file (a FIFO, a dangling link, a link loop)
    is kept: the decoder skips it with a line saying what it is, instead of it vanishing silently.

    Raises:
        Ge2eError: an input does not exist at all, or nothing to embed was found.
    """
    from ge2e.data.readers import list_audio

    files: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            files.extend(path.joinpath(*parts) for parts in list_audio(path))
        elif os.path.lexists(path):
            files.append(path)  # a named file is always tried: its decoder, not its suffix, decides
        else:
            raise Ge2eError(f"{printable(path)}: no such file or folder")
    if not files:
        raise Ge2eError(f"no audio files found in {', '.join(inputs)}")
    return files


def add_speaker_level_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--speaker-level",
        type=int,
        metavar="N",
        help="name speakers after the folder N levels above each file (1 = its parent); default: from the corpus "
        "layout (LibriSpeech <speaker>/<chapter>/<utt> gives the speaker, not the chapter)",
    )


def save_npz(path: str | Path, **arrays: Any) -> None:
    """``np.savez`` written atomically (:func:`ge2e.files.atomic_write`)."""
    from ge2e.files import atomic_write

    atomic_write(path, lambda f: np.savez(f, **arrays))


def run(args: argparse.Namespace) -> int:
    from ge2e.files import check_free_space

    if args.batch_size < 1:
        raise Ge2eError(f"--batch-size must be >= 1, got {args.batch_size}")
    folder = check_output(args, args.out)  # first: collecting files already imports torch (seconds)
    files = collect_audio(args.inputs)
    check_free_space(folder, len(files) * NPZ_BYTES_PER_FILE)
    model = open_model(args)
    result = model.embed_files(files, batch_size=args.batch_size, progress=not args.no_progress)
    report_skipped(result.errors)
    if not result.paths:
        raise Ge2eError(f"none of the {len(files)} file(s) could be embedded")
    save_npz(args.out, paths=np.array(result.paths), embeddings=result.embeddings.astype(np.float32))
    print(f"{args.out}: {len(result.paths)} embeddings of size {result.embeddings.shape[1]}")
    return 0

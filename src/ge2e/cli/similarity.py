"""``ge2e similarity FILES...``: the cosine-similarity matrix of utterances, printed and drawn as a heatmap."""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ge2e.cli._model import add_model_options, open_model
from ge2e.cli._preflight import MATPLOTLIB_HINT, add_mkdir_option, check_output, report_skipped, require_module
from ge2e.cli.embed import add_speaker_level_option, collect_audio
from ge2e.errors import Ge2eError

MAX_PRINTED = 30  # a wider matrix does not fit a terminal; the PNG and --csv still hold all of it


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "similarity",
        help="cosine-similarity matrix of utterances (printed, and a heatmap PNG)",
        description="Embed the files (folders are searched recursively), print their all-pairs cosine "
        "similarity (up to 30 files) and draw it as a heatmap, rows ordered by speaker (named as the corpus layout "
        "names them); beyond 40 files, the rows of each speaker are one labelled block. Files that cannot be "
        "used are skipped.",
    )
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", help="audio files and/or folders")
    p.add_argument(
        "--out", default="similarity.png", metavar="IMAGE", help="heatmap: .png .svg .pdf .jpg (default similarity.png)"
    )
    p.add_argument("--csv", metavar="CSV", help="also write the full matrix as CSV")
    add_mkdir_option(p)
    add_model_options(p)
    add_speaker_level_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def short_names(paths: Sequence[str]) -> list[str]:
    """File names without suffix; where two collide, their parent folder is kept too (``spk1/a``, ``spk2/a``)."""
    stems = [Path(p).stem for p in paths]
    return [f"{Path(p).parent.name}/{s}" if stems.count(s) > 1 else s for p, s in zip(paths, stems, strict=True)]


def format_matrix(matrix: np.ndarray, names: Sequence[str]) -> str:
    """Plain aligned text: a numbered legend, then the matrix with 2-decimal scores."""
    width = max(5, len(str(len(names))) + 1)
    legend = [f"{i + 1:>{width}}  {name}" for i, name in enumerate(names)]
    header = " " * width + "".join(f"{i + 1:>{width + 1}}" for i in range(len(names)))
    rows = [f"{i + 1:>{width}}" + "".join(f"{v:>{width + 1}.2f}" for v in row) for i, row in enumerate(matrix)]
    return "\n".join([*legend, "", header, *rows])


def write_csv(path: str | Path, matrix: np.ndarray, paths: Sequence[str]) -> None:
    """The matrix as CSV with a header row and first column of file paths, written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", *paths])
    for p, row in zip(paths, matrix, strict=True):
        writer.writerow([p, *(f"{v:.6f}" for v in row)])
    from ge2e.files import atomic_write

    atomic_write(path, lambda f: f.write(buffer.getvalue()), "w")


def run(args: argparse.Namespace) -> int:
    from ge2e.cli.plot import MAX_TICK_LABELS, save_heatmap
    from ge2e.data.readers import speaker_names

    require_module("matplotlib", MATPLOTLIB_HINT)
    files = collect_audio(args.inputs)
    check_output(args, args.out, image=True)
    if args.csv:
        check_output(args, args.csv)
    result = open_model(args).embed_files(files, progress=not args.no_progress)
    report_skipped(result.errors)
    if len(result.paths) < 2:
        raise Ge2eError(f"need at least 2 usable files, got {len(result.paths)}")
    # rows of one speaker side by side, so that speakers show as blocks
    speaker_of = dict(zip(result.paths, speaker_names(result.paths, args.speaker_level), strict=True))
    order = sorted(range(len(result.paths)), key=lambda i: (speaker_of[result.paths[i]], result.paths[i]))
    paths = [result.paths[i] for i in order]
    embeddings = result.embeddings[order]
    matrix = embeddings @ embeddings.T  # unit rows: the dot product is the cosine
    names = short_names(paths)
    if len(names) <= MAX_PRINTED:
        print(format_matrix(matrix, names))
    else:
        print(f"{len(names)} files: matrix too wide to print (see {args.out}, or use --csv)")
    if args.csv:
        write_csv(args.csv, matrix, paths)
        print(f"{args.csv}: {len(names)} x {len(names)} matrix")
    speakers = [speaker_of[p] for p in paths]
    if len(names) > MAX_TICK_LABELS and len(set(speakers)) > 1:  # too many rows to name: name the speakers' blocks
        title = f"Cosine similarity of {len(names)} utterances of {len(set(speakers))} speakers"
        save_heatmap(matrix, speakers, args.out, title, grouped=True)
    else:
        save_heatmap(matrix, names, args.out, f"Cosine similarity of {len(names)} utterances")
    print(f"{args.out}: heatmap")
    return 0

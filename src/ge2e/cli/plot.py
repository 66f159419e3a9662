"""``ge2e plot DIR``: a 2-D projection (PCA, or UMAP when installed) of utterance d-vectors, one colour per speaker.

Also home of the two figures the ``similarity`` and ``demo`` commands share: :func:`save_heatmap` and
:func:`save_projection` (matplotlib's object API on an Agg canvas; PNGs written atomically).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ge2e.cli._model import add_model_options, open_model
from ge2e.cli._preflight import (
    MATPLOTLIB_HINT,
    UMAP_HINT,
    add_mkdir_option,
    check_output,
    report_skipped,
    require_module,
)
from ge2e.cli.embed import add_speaker_level_option
from ge2e.errors import Ge2eError

MAX_TICK_LABELS = 40  # beyond this a heatmap's axis labels overlap into noise
MAX_LEGEND = 20  # legend rows that stay readable; more speakers are named at their clusters instead
MAX_CELL_NUMBERS = 12  # up to this many rows, each heatmap cell shows its score


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="plot a 2-D projection of the speakers of a folder",
        description="Embed every utterance of a <speaker>/<utterance> folder (or any layout `ge2e prepare` "
        "detects) and plot a 2-D projection coloured by speaker: PCA, or UMAP with `pip install umap-learn`.",
    )
    p.add_argument("folder", metavar="DIR", help="folder of <speaker>/<utterance> audio files")
    p.add_argument(
        "--out", default="projection.png", metavar="IMAGE", help="image: .png .svg .pdf .jpg (default projection.png)"
    )
    add_mkdir_option(p)
    p.add_argument("--method", choices=("pca", "umap"), default="pca", help="projection (default pca)")
    p.add_argument("--per-speaker", type=int, default=0, metavar="N", help="at most N utterances per speaker")
    add_speaker_level_option(p)
    add_model_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------ projections


def project_2d(embeddings: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``(U, D)`` d-vectors -> ``(U, 2)`` coordinates by PCA (scikit-learn) or UMAP (umap-learn, optional).

    Raises:
        Ge2eError: fewer than 3 embeddings, or UMAP requested but umap-learn is not installed.
    """
    if embeddings.shape[0] < 3:
        raise Ge2eError(f"a projection needs at least 3 utterances, got {embeddings.shape[0]}")
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise Ge2eError(UMAP_HINT) from None
        neighbours = min(15, embeddings.shape[0] - 1)
        return umap.UMAP(n_neighbors=neighbours, metric="cosine", random_state=seed).fit_transform(embeddings)
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(embeddings)


def save_projection(
    coords: np.ndarray, speakers: Sequence[str], path: str | Path, title: str, centroids: np.ndarray | None = None
) -> None:
    """Scatter ``(U, 2)`` coordinates, one style per speaker; optional ``(S, 2)`` centroids (sorted speaker order).

    Speakers are told apart by colour and, beyond ten, marker shape (:func:`ge2e.plots.speaker_style`). Up to
    :data:`MAX_LEGEND` speakers are named in a legend beside the axes; more are named at the centre of their
    points, where the eye looks for them.
    """
    from ge2e.plots import new_figure, save_figure, speaker_style

    names = sorted(set(speakers))
    fig = new_figure((7.0, 6.0))
    ax = fig.add_subplot()
    labels = np.asarray(speakers)
    for i, name in enumerate(names):
        colour, marker = speaker_style(i, len(names))
        pts = coords[labels == name]
        ax.scatter(pts[:, 0], pts[:, 1], s=18, color=colour, marker=marker, label=name, alpha=0.8)
        if centroids is not None:
            ax.scatter(*centroids[i], s=160, marker="*", color=colour, edgecolors="black", linewidths=0.8)
        if len(names) > MAX_LEGEND:
            x, y = np.median(pts, axis=0)
            ax.annotate(
                name, (x, y), fontsize=6, ha="center", va="center", color="black",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": colour, "alpha": 0.75},
            )  # fmt: skip
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(names) <= MAX_LEGEND:
        ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5), title="speaker")
    save_figure(fig, path)


def save_heatmap(
    matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str, grouped: bool = False
) -> None:
    """Plot a square ``(U, U)`` cosine-similarity matrix.

    With ``grouped``, ``labels`` are the speakers of rows already sorted by speaker: lines separate the speaker
    blocks and each block is labelled once. Otherwise every row is labelled, for up to 40 rows, and up to
    :data:`MAX_CELL_NUMBERS` rows each cell shows its score (colour alone is hard to read to two decimals).
    """
    from ge2e.plots import new_figure, save_figure

    size = min(12.0, 4.0 + 0.18 * min(len(labels), 3 * MAX_TICK_LABELS))
    fig = new_figure((size + 1.2, size))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", vmin=min(0.0, float(matrix.min())), vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
    ticks, names = np.arange(len(labels)), list(labels)
    if grouped:
        starts = [i for i in range(len(labels)) if i == 0 or labels[i] != labels[i - 1]]
        ends = [*starts[1:], len(labels)]
        for edge in starts[1:]:
            ax.axhline(edge - 0.5, color="white", linewidth=0.6)
            ax.axvline(edge - 0.5, color="white", linewidth=0.6)
        ticks, names = (np.array(starts) + np.array(ends) - 1) / 2, [labels[i] for i in starts]
    if len(names) <= MAX_TICK_LABELS:
        ax.set_xticks(ticks, names, rotation=90, fontsize="x-small")
        ax.set_yticks(ticks, names, fontsize="x-small")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if not grouped and len(labels) <= MAX_CELL_NUMBERS:
        middle = (image.norm.vmin + image.norm.vmax) / 2
        for (row, col), value in np.ndenumerate(matrix):
            ink = "black" if value > middle else "white"  # viridis is light at the top, dark at the bottom
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize="x-small", color=ink)
    ax.set_title(title)
    save_figure(fig, path)


# ------------------------------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    from ge2e.data.readers import name_speakers, read_corpus

    require_module("matplotlib", MATPLOTLIB_HINT)
    if args.method == "umap":
        require_module("umap", UMAP_HINT)
    check_output(args, args.out, image=True)
    utterances = name_speakers(read_corpus(args.folder), args.speaker_level)
    if args.per_speaker > 0:
        seen: dict[str, int] = {}
        kept = []
        for utt in utterances:
            seen[utt.key] = seen.get(utt.key, 0) + 1
            if seen[utt.key] <= args.per_speaker:
                kept.append(utt)
        utterances = kept
    speaker_of = {u.path: u.speaker for u in utterances}
    result = open_model(args).embed_files([u.path for u in utterances], progress=not args.no_progress)
    report_skipped(result.errors)
    speakers = [speaker_of[p] for p in result.paths]
    coords = project_2d(result.embeddings, args.method)
    title = f"{len(set(speakers))} speakers, {len(speakers)} utterances ({args.method.upper()})"
    save_projection(coords, speakers, args.out, title)
    print(f"{args.out}: {title}")
    return 0

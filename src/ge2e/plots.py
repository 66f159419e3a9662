"""Evaluation plots (optional extra ``ge2e[plot]``): DET curves on normal-deviate axes and score histograms.

matplotlib is imported lazily and used through its object-oriented API with the Agg canvas, so importing this
module is cheap and never changes the process-wide pyplot backend. Images are written atomically (temporary file
in the same folder, then ``os.replace``) in the format their suffix names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from ge2e.errors import OutputError
from ge2e.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Tick positions of the classic NIST DET plot, as probabilities.
_DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
_DET_MAX = 0.5
SPEAKER_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
IMAGE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpg", ".jpeg": "jpg"}


def new_figure(size: tuple[float, float]) -> Figure:
    """An empty figure of ``size`` inches on the Agg canvas (no pyplot state), laid out to fit its labels."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'ge2e[plot]'") from exc
    return Figure(figsize=size, layout="constrained")


def image_format(path: str | Path) -> str:
    """The image format ``path``'s suffix asks for (png, svg, pdf, jpg).

    Raises:
        OutputError: another suffix (say it in one line, before any work, rather than write a PNG under that name).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise OutputError(path, f"unknown image type {suffix or '(no suffix)'!r}: name it .png, .svg, .pdf or .jpg")
    return IMAGE_FORMATS[suffix]


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` to ``path`` in the format of its suffix (:func:`image_format`), atomically."""
    kind = image_format(path)
    atomic_write(path, lambda f: fig.savefig(f, format=kind, dpi=120))


def speaker_style(i: int, n: int) -> tuple[tuple[float, ...], str]:
    """Colour and marker of speaker ``i`` of ``n``: tab10's ten colours, crossed with marker shapes beyond ten
    speakers. Not tab20, whose light and dark twins of one hue read as one speaker, nor a continuous colour map,
    whose neighbours are indistinguishable."""
    from matplotlib import colormaps

    return colormaps["tab10"].colors[i % 10], SPEAKER_MARKERS[(i // 10) % len(SPEAKER_MARKERS)]


def _probit(p: ArrayLike) -> np.ndarray:
    """Normal deviate of probabilities ``p``, clipped just past the lowest tick so zero rates stay finite."""
    from scipy.special import ndtri

    return ndtri(np.clip(np.asarray(p, dtype=np.float64), _DET_TICKS[0] / 2, 1 - _DET_TICKS[0] / 2))


def plot_det(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], path: str | Path) -> None:
    """Plot DET curves with probit axes (false-alarm rate vs miss rate), standard NIST style.

    Args:
        curves: name -> ``(p_fa (m,), p_miss (m,))``, e.g. the first two outputs of
            :func:`ge2e.metrics.det_curve`.
        path: PNG file to write.
    """
    fig = new_figure((7.0, 5.0))
    ax = fig.add_subplot()
    smallest = _DET_MAX
    for name, (p_fa, p_miss) in curves.items():
        fa, miss = np.asarray(p_fa, dtype=np.float64), np.asarray(p_miss, dtype=np.float64)
        ax.plot(_probit(fa), _probit(miss), label=name)
        positive = np.concatenate((fa[fa > 0], miss[miss > 0]))
        if positive.size:
            smallest = min(smallest, float(positive.min()))
    # Lowest tick at or below the smallest non-zero rate, so good systems are not cut off.
    low = max((t for t in _DET_TICKS if t <= smallest), default=_DET_TICKS[0])
    ticks = [t for t in _DET_TICKS if t >= low]
    limits = _probit([low, _DET_MAX])
    ax.plot(limits, limits, color="0.6", linestyle="--", linewidth=0.8, label="EER line")
    labels = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(_probit(ticks), labels)
    ax.set_yticks(_probit(ticks), labels)
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_xlabel("False alarm rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.grid(True, linewidth=0.4)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")  # beside the axes, never on a curve
    save_figure(fig, path)


def plot_score_histogram(
    scores: ArrayLike, labels: ArrayLike, thresholds: Mapping[str, float], path: str | Path
) -> None:
    """Overlaid target / non-target score histograms with labelled threshold lines.

    Args:
        scores: ``(n,)`` trial scores.
        labels: ``(n,)`` 1 = target, 0 = non-target.
        thresholds: legend label -> threshold, each drawn as a vertical line; the label says what it is (the
            EER point of these very trials is not the threshold a deployed model decides with).
        path: PNG file to write.
    """
    s = np.asarray(scores, dtype=np.float64)
    is_target = np.asarray(labels) == 1
    bins = np.histogram_bin_edges(s, bins=min(60, max(10, s.size // 20)))
    fig = new_figure((8.0, 4.0))
    ax = fig.add_subplot()
    ax.hist(s[~is_target], bins=bins, alpha=0.6, density=True, label=f"non-target (n={np.sum(~is_target)})")
    ax.hist(s[is_target], bins=bins, alpha=0.6, density=True, label=f"target (n={np.sum(is_target)})")
    for (label, value), style in zip(thresholds.items(), ("--", ":"), strict=False):
        ax.axvline(value, color="black", linestyle=style, linewidth=1.2, label=f"{label} {value:.3f}")
    ax.set_xlabel("Score")
    ax.set_ylabel("Density")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")  # beside the axes, never on a bar
    save_figure(fig, path)

"""Plot validation EER against training hours for one or more runs (``metrics.csv`` of each ``out_dir``).

A run warm-started from another (``--start RUN:STEP``) is drawn from that run's time at that step, so curves of
one lineage join up. Hours are one CPU core's wall-clock, pauses left out (``training_facts.step_seconds``).

    python recipes/shared_ti/plot_runs.py exp/shared_ti_small_v2 exp/shared_ti_small_v2_specaug \\
        --start exp/shared_ti_small_v2_specaug=exp/shared_ti_small_v2:2100 --out docs/img/training_v2.png
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from training_facts import step_seconds


def curve(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, cumulative hours, validation EER or NaN) of a run's metrics.csv."""
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    steps = np.array([int(r["step"]) for r in rows])
    seconds, _ = step_seconds(steps, np.array([float(r["time"]) for r in rows]))
    hours = np.concatenate([[0.0], np.cumsum(seconds)]) / 3600
    eer = np.array([float(r["val_eer"]) if r.get("val_eer") else np.nan for r in rows])
    return steps, hours, eer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (out_dir) holding metrics.csv")
    parser.add_argument("--start", nargs="*", default=[], metavar="RUN=PARENT:STEP", help="warm-start offsets")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_runs: needs matplotlib (pip install 'ge2e[plot]')", file=sys.stderr)
        return 2
    curves = {run: curve(run) for run in args.runs}
    offsets = {}
    for item in args.start:
        run, _, parent = item.partition("=")
        parent_run, _, step = parent.rpartition(":")
        steps, hours, _ = curves[Path(parent_run)]
        offsets[Path(run)] = float(hours[np.searchsorted(steps, int(step))])
    fig, ax = plt.subplots(figsize=(7, 4))
    for run, (_steps, hours, eer) in curves.items():
        keep = ~np.isnan(eer)
        ax.plot(hours[keep] + offsets.get(run, 0.0), 100 * eer[keep], marker="o", label=run.name)
    ax.set_xlabel("training hours (one CPU core)")
    ax.set_ylabel("validation EER, mean of the dev sources (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

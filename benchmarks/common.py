"""Shared benchmark helpers: machine description, interleaved repeat timing, tables and JSON results.

Every benchmark measures ge2e and its baseline in the same process, interleaved (A B C, A B C, ...), and reports
repeat medians: the machine may be shared with other work, and interleaving spreads any load change evenly over
the contenders instead of penalising whichever ran last.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict[str, Any]:
    """Where and when a benchmark ran: CPU, cores, load average at start, torch version, date (UTC)."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
    }


def header(title: str, info: dict[str, Any], threads: list[int] | int) -> str:
    """One-paragraph description of the run, printed above every table."""
    return (
        f"{title}\nmachine: {info['cpu']}, {info['cores']} cores (1-min load {info['load_avg_1min']} at start); "
        f"torch {info['torch']}; threads {threads}; {info['date']}; commit {info['commit']}"
    )


# A machine is quiet enough to time on when other work adds at most this many runnable tasks per thread the
# benchmark uses to its 1-minute load average (the benchmark's own threads count in it too). Load slows contenders
# unequally (a baseline that waits on many small calls suffers most), so a ratio measured on a busy machine
# measures the load as much as the code.
QUIET_LOAD_PER_THREAD = 0.5
QUIET_MAX_LOAD_PER_THREAD = 1 + QUIET_LOAD_PER_THREAD  # the run's own thread plus what other work may take


def load_average() -> float:
    """The 1-minute load average, rounded."""
    return round(os.getloadavg()[0], 2)


def quiet(loads: list[float], threads: int) -> bool:
    """Whether every load average seen during a run left at most ``QUIET_LOAD_PER_THREAD`` per thread in use to
    other work: the run's own ``threads`` count in the load (a one-thread run lifts it towards 1.0 by itself)."""
    return max(loads) <= QUIET_MAX_LOAD_PER_THREAD * threads


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1, loads: list[float] | None = None
) -> dict[str, list[float]]:
    """Wall seconds of each call, ``repeats`` rounds in which every function runs once, in a rotating order.

    Rotating the order keeps a slow first or last slot (cache state, a neighbour's burst) from always falling on
    the same contender. ``warmup`` rounds run first and are not recorded. ``loads``, when given, receives the
    1-minute load average before the first round and after each round.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    if loads is not None:
        loads.append(load_average())
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
        if loads is not None:
            loads.append(load_average())
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-markdown table (so a run's output pastes straight into docs/performance.md)."""
    cells = [[str(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` (or ``name`` itself when it ends in .json) atomically (temp file, then
    rename) and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = Path(name) if name.endswith(".json") else RESULTS / f"{name}.json"
    if not path.parent.is_dir():
        sys.exit(f"{path}: its folder does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path

"""Checks every command runs before any work starts: optional packages it will need, and skipped-file reports.

A missing optional package found after minutes of embedding wastes those minutes; found first, it is one line.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import IO

from ge2e.errors import Ge2eError, printable

MATPLOTLIB_HINT = "plots need matplotlib, which is not installed (pip install 'ge2e[plot]')"
UMAP_HINT = "--method umap needs umap-learn, which is not installed (pip install umap-learn); or use --method pca"


def require_module(module: str, hint: str) -> None:
    """Ge2eError(``hint``) when ``module`` cannot be imported; looks it up without importing it (fast)."""
    if importlib.util.find_spec(module) is None:
        raise Ge2eError(hint)


def report_skipped(errors: dict[str, str], file: IO[str] | None = None) -> None:
    """Print one line per file that could not be used, its name escaped so that each stays one line."""
    out = file or sys.stdout
    if errors:
        print(f"skipped {len(errors)} file(s):", file=out)
        for path, problem in errors.items():
            print(f"  {printable(path)}: {problem}", file=out)


def add_mkdir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mkdir", action="store_true", help="create the folder the output goes in when it does not exist")


def check_output(args: argparse.Namespace, path: str | Path, image: bool = False, folder: bool = False) -> Path:
    """Fail before any work when ``path`` (a file, or with ``folder`` an output folder, which may be new) cannot
    be written: the folder holding it is missing (unless ``--mkdir``), or, for an ``image``, its suffix names no
    image type. Returns the folder written into."""
    from ge2e.files import check_writable

    if image:
        from ge2e.plots import image_format

        image_format(path)
    return check_writable(path, folder=folder, create_parents=args.mkdir)

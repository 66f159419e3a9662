"""How commands talk to scripts: ``--json`` (one JSON document on stdout, nothing else there) and ``--quiet``
(no notes on stderr). Human-readable results stay on stdout; notes about them (where a threshold came from,
skipped files in JSON mode) go to stderr, so that ``cmd | head -1`` reads the result."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_output_options(p: argparse.ArgumentParser, quiet: bool = True) -> None:
    p.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout instead of text (docs/usage.md)"
    )
    if quiet:
        p.add_argument("--quiet", "-q", action="store_true", help="no notes on stderr (where the threshold came from)")


def print_json(document: Any) -> None:
    """``document`` as one JSON document on stdout (NaN refused: JSON has none)."""
    print(json.dumps(document, indent=1, allow_nan=False))


def note(args: argparse.Namespace, line: str) -> None:
    """A note about the results, on stderr unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(line, file=sys.stderr)


def human_stream(args: argparse.Namespace) -> Any:
    """Where text meant for a person goes: stdout, or stderr when stdout carries ``--json``."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout

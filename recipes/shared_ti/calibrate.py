"""Calibrate a model's default threshold the way the bundled model's is: ``ge2e calibrate`` at the equal-error-rate
point of the four official DEVELOPMENT trial lists, pooled (the criterion and why: docs/usage.md, "Default
threshold"). Dev speakers are never trained on and never used for reported figures (those come from the test
lists, ``model_card.py``). Other options (``--far 0.01``, ``--no-progress``) go to ``ge2e calibrate``.

    python recipes/shared_ti/calibrate.py --model src/ge2e/pretrained/ge2e_small.pt
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ge2e.cli import main as ge2e
from ge2e.data.splits import DEV_LISTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint or exported file to calibrate")
    parser.add_argument("--data", default=os.environ.get("GE2E_DATA", "../shared/data"), help="shared data folder")
    args, rest = parser.parse_known_args(argv)
    lists = [str(Path(args.data) / "trials" / f"{name}.txt") for name in DEV_LISTS]
    return ge2e(["calibrate", "--model", args.model, "--trials", *lists, *rest])


if __name__ == "__main__":
    sys.exit(main())

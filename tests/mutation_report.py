"""Per-module mutation scores from a finished ``mutmut run`` (``make mutate`` prints this after the run).

Score = killed / (killed + survived + untested): a timeout counts as killed (the mutant broke the code badly
enough to hang a test), a mutant no selected test reaches counts as a survivor.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 36, 152, 255, -9, -11}  # mutmut's exit codes for killed, timeout and crash
SURVIVED, UNTESTED = {0}, {5, 33}


def main(root: Path = Path("mutants")) -> int:
    metas = sorted(root.glob("src/**/*.py.meta"))
    if not metas:
        print(f"no mutation results under {root}/ (run `make mutate`)", file=sys.stderr)
        return 1
    print("| module | mutants | killed | survived | no test reaches it | score |\n|---|---:|---:|---:|---:|---:|")
    survivors = []
    for meta in metas:
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        count = Counter(
            "killed" if c in KILLED else "survived" if c in SURVIVED else "untested" if c in UNTESTED else "other"
            for c in codes.values()
        )
        scored = count["killed"] + count["survived"] + count["untested"]
        score = 100.0 * count["killed"] / scored if scored else float("nan")
        module = str(meta.relative_to(root / "src")).removesuffix(".py.meta")
        print(
            f"| {module} | {len(codes)} | {count['killed']} | {count['survived']} | {count['untested']} "
            f"| {score:.1f}% |"
        )
        survivors += [k for k, c in codes.items() if c in SURVIVED | UNTESTED]
    print(f"\n{len(survivors)} surviving mutants (`mutmut show NAME` shows one):")
    for name in survivors:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

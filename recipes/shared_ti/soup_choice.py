"""Choose among candidate checkpoints of the bundled model on the four official DEVELOPMENT lists: each scored as
augment_ab.py scores an arm, and compared with the first (the bundled model) trial for trial, with the 95%
paired-bootstrap interval of the EER difference (enrolment speakers resampled). Writes
benchmarks/results/soup_choice.json and prints the table; the candidate with the lowest mean dev EER is bundled
(run.sh stage 7), and the model card quotes the file.

    python recipes/shared_ti/soup_choice.py exp/soup3.pt exp/shared_ti_v4/best.pt exp/g2_telephone/best.pt \
        exp/g2_specaug/best.pt exp/soup_g2_3.pt exp/soup5.pt
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from augment_ab import compare, score_arm, speaker_lookup, verdict

from ge2e.data.splits import DEV_LISTS

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks/results/soup_choice.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="model checkpoints, the bundled model first")
    parser.add_argument("--data", default=os.environ.get("GE2E_DATA", "../shared/data"), help="shared data folder")
    parser.add_argument("--cache", default="cache/all", help="feature cache of the dev files")
    args = parser.parse_args(argv)
    if len(args.checkpoints) < 2:
        parser.error("name the bundled model and at least one candidate")
    torch.set_num_threads(1)
    speaker_of = speaker_lookup(args.cache)
    scored = [score_arm(path, Path(args.data), args.cache, speaker_of, 0) for path in args.checkpoints]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    rows = []
    for path, s in zip(args.checkpoints, scored, strict=True):
        eers = {n: round(float(s["lists"][n]["eer"]), 6) for n in DEV_LISTS}
        row = {
            "checkpoint": str(path),
            "step": s["step"],
            "eer": eers,
            "mean": round(float(np.mean([*eers.values()])), 6),
        }
        if s is not scored[0]:
            row["vs_first"] = compare(scored[0], s)
        rows.append(row)
    RESULTS.write_text(json.dumps({"candidates": rows, "commit": commit.stdout.strip()}, indent=1) + "\n")
    print("| checkpoint | " + " | ".join(DEV_LISTS) + " | mean | vs first, 95% interval |")
    print("|---|" + "---|" * (len(DEV_LISTS) + 2))
    for row in rows:
        diff = row.get("vs_first", {}).get("mean")
        versus = (
            f"{100 * diff['diff']:+.2f} [{100 * diff['lo']:+.2f}, {100 * diff['hi']:+.2f}] {verdict(diff)}"
            if diff
            else ""
        )
        cells = " | ".join(f"{100 * row['eer'][n]:.2f}%" for n in DEV_LISTS)
        print(f"| `{row['checkpoint']}` | {cells} | {100 * row['mean']:.2f}% | {versus} |")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

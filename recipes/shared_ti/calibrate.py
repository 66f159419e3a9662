"""Calibrate a model's default decision threshold on the official DEVELOPMENT trial lists.

The threshold is the equal-error-rate threshold of the dev trials pooled across lists (DSPSpeech-20.dev,
speech_commands_v0.02_test.dev, speechocean762.dev and wuw2.dev by default): the dev speakers are never trained on
and never used for reported figures, which come from the test lists (``model_card.py``). The record is written
beside the checkpoint (``ge2e_small.pt`` -> ``ge2e_small.json``), tied to its SHA-256, and read by
:func:`ge2e.api.load_model`.

    python recipes/shared_ti/calibrate.py --model src/ge2e/pretrained/ge2e_small.pt
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ge2e
from ge2e.api import calibration_path, file_sha256
from ge2e.errors import Ge2eError
from ge2e.evaluate import EmbeddingStore, evaluate, list_trials, model_fingerprint
from ge2e.metrics import eer
from ge2e.model import SpeakerEncoder

DEV_LISTS = ("DSPSpeech-20.dev", "speech_commands_v0.02_test.dev", "speechocean762.dev", "wuw2.dev")


def calibrate(model: SpeakerEncoder, data: Path, lists: list[str]) -> dict[str, Any]:
    """Per-list dev figures and the pooled EER threshold, as the JSON-ready calibration record."""
    store = EmbeddingStore(None, model_fingerprint(model))
    per_list: dict[str, Any] = {}
    scores, labels = [], []
    for name in lists:
        report, scored = evaluate(model, list_trials(data / "trials" / f"{name}.txt", data), store)
        per_list[name] = {
            "eer": round(report["eer"], 6),
            "eer_threshold": round(report["eer_threshold"], 6),
            "min_dcf_0.01": round(report["min_dcf_0.01"], 6),
            "n_trials": report["n_trials"],
            "n_target": report["n_target"],
            "skipped_trials": report["skipped_trials"],
        }
        scores.append(scored.scores)
        labels.append(scored.labels)
        print(f"{name}: EER {100 * report['eer']:.2f}% at {report['eer_threshold']:.4f} ({report['n_trials']} trials)")
    pooled_eer, threshold = eer(np.concatenate(scores), np.concatenate(labels))
    return {
        "threshold": round(threshold, 6),
        "method": "EER threshold of the pooled official dev trial lists (score >= threshold: same speaker)",
        "pooled_eer": round(pooled_eer, 6),
        "lists": per_list,
    }


def write_json(path: Path, record: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint to calibrate")
    parser.add_argument("--data", default=os.environ.get("GE2E_DATA", "../shared/data"), help="shared data folder")
    parser.add_argument("--lists", nargs="+", default=list(DEV_LISTS), help="dev trial lists (names in trials/)")
    parser.add_argument("--out", help="calibration file (default: the checkpoint path with .json)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not (data / "trials").is_dir():
        print(f"calibrate: {data}/trials not found (set GE2E_DATA or --data)", file=sys.stderr)
        return 2
    if any(not name.endswith(".dev") for name in args.lists):
        print("calibrate: only development lists (*.dev) may set the threshold", file=sys.stderr)
        return 2
    try:
        model = SpeakerEncoder.load(args.model)
        record = calibrate(model, data, args.lists)
    except Ge2eError as exc:
        print(f"calibrate: {exc}", file=sys.stderr)
        return 1
    record = {
        "model": Path(args.model).name,
        "model_sha256": file_sha256(args.model),
        **record,
        "ge2e_version": ge2e.__version__,
        "script": "recipes/shared_ti/calibrate.py",
    }
    out = Path(args.out) if args.out else calibration_path(args.model)
    write_json(out, record)
    print(f"{out}: threshold {record['threshold']:.4f} (pooled dev EER {100 * record['pooled_eer']:.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Resemblyzer's EER and minDCF on the official test trial lists, for the model card's comparison.

Same trials, same decoded audio (``ge2e.audio.load_audio``: mono 16 kHz), same metric and scoring code as
``recipes/shared_ti/model_card.py``; Resemblyzer keeps its own front end (volume normalisation, webrtcvad
silence trimming, 40 mel bands) and its shipped weights. Optional dependency: ``pip install 'ge2e[bench]'``.

    python benchmarks/resemblyzer_eer.py        # writes benchmarks/results/resemblyzer_eer.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import machine, write_result
from ge2e.audio import load_audio
from ge2e.data.splits import TEST_LISTS
from ge2e.errors import AudioError
from ge2e.evaluate import EmbeddingStore, list_trials, score_trials
from ge2e.metrics import eer, min_dcf

MIN_SAMPLES = 1_600  # 100 ms at 16 kHz: less than this after webrtcvad trimming is "no speech"


def import_resemblyzer() -> Any:
    """``resemblyzer``, tolerating setuptools >= 81, which dropped ``pkg_resources``.

    Its dependency webrtcvad 2.0.10 imports pkg_resources only to read its own version string, so a stand-in
    that answers from importlib.metadata is enough.
    """
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")
        shim.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
        sys.modules["pkg_resources"] = shim
    try:
        import resemblyzer
    except ImportError:
        sys.exit("resemblyzer is not installed: pip install 'ge2e[bench]' (or pip install resemblyzer)")
    return resemblyzer


def embed_all(encoder: Any, preprocess_wav: Any, paths: list[str], store: EmbeddingStore) -> dict[str, str]:
    """Resemblyzer d-vectors of every path not yet in ``store``; ``{path: problem}`` for the files that failed."""
    errors: dict[str, str] = {}
    for path in paths:
        if path in store:
            continue
        try:
            wav = preprocess_wav(load_audio(path, target_sr=16_000), source_sr=16_000)
        except AudioError as exc:
            errors[path] = exc.problem
            continue
        if len(wav) < MIN_SAMPLES:
            errors[path] = f"{1000 * len(wav) / 16_000:.0f} ms left after webrtcvad trimming"
            continue
        store.vectors[path] = encoder.embed_utterance(wav).astype(np.float32)
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("GE2E_DATA", "../shared/data"), help="shared data folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not (data / "trials").is_dir():
        print(f"resemblyzer_eer: {data}/trials not found (set GE2E_DATA or --data)", file=sys.stderr)
        return 2
    resemblyzer = import_resemblyzer()
    encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
    store = EmbeddingStore(None, "resemblyzer")
    lists: dict[str, Any] = {}
    for name in TEST_LISTS:
        trials = list_trials(data / "trials" / f"{name}.txt", data)
        start = time.perf_counter()
        errors = embed_all(encoder, resemblyzer.preprocess_wav, [p for t in trials for p in (*t.enroll, t.test)], store)
        scored = score_trials(trials, store)
        rate, _ = eer(scored.scores, scored.labels)
        lists[name] = {
            "eer": round(rate, 6),
            "min_dcf_0.01": round(min_dcf(scored.scores, scored.labels, p_target=0.01)[0], 6),
            "min_dcf_0.05": round(min_dcf(scored.scores, scored.labels, p_target=0.05)[0], 6),
            "n_trials": len(scored.labels),
            "skipped_trials": scored.skipped,
            "bad_files": len(errors),
            "embed_seconds": round(time.perf_counter() - start, 1),
        }
        print(f"{name}: EER {100 * rate:.2f}%, {len(scored.labels)} trials ({scored.skipped} dropped)")
    path = write_result(
        "resemblyzer_eer",
        {
            "system": f"Resemblyzer {importlib.metadata.version('resemblyzer')} (bundled pretrained.pt)",
            "script": "benchmarks/resemblyzer_eer.py",
            "lists": lists,
            "machine": machine(),
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

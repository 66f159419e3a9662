"""Calibration: choose a model's default decision threshold on development trials and store it with the model.

Two criteria, both on the trials pooled across every source given:

* ``"eer"`` (default): the equal-error-rate point, where misses and false accepts are equally frequent; the
  bundled model's criterion, on the official dev lists (docs/usage.md says why);
* ``"far"``: the lowest threshold whose false-accept rate is at most a target (``far=0.01``), for uses where
  accepting an impostor costs more than rejecting the right speaker.

Trials come from VoxCeleb-format lists or from a ``<speaker>/<utterance>`` folder (each speaker enrolled with
``enroll`` utterances, every other utterance tested against every speaker, as ``ge2e eval --corpus`` does).
Choose the threshold on development speakers, never on the ones you report figures for.

The record says which criterion, which data, the error rates there and every trial it could not score (and
why). It is written beside a checkpoint as the same path with ``.json`` for ``.pt`` (``best.pt`` -> ``best.json``,
tied to the checkpoint's SHA-256) and into the metadata of an exported ``.onnx`` / ``.ts`` file;
:func:`ge2e.load_model` restores it either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from ge2e.errors import Ge2eError
from ge2e.evaluate import EmbeddingStore, EvalOptions, EvalTrial, corpus_trials, evaluate, list_trials
from ge2e.export import write_calibration
from ge2e.files import atomic_write
from ge2e.inference import Encoder, model_fingerprint
from ge2e.metrics import eer, error_rates, threshold_at_far
from ge2e.pretrained import calibration_path, file_sha256, is_exported


def list_sources(paths: Sequence[str | Path], root: str | Path | None = None) -> dict[str, list[EvalTrial]]:
    """Trial lists -> ``{list name: trials}`` (the name is the file name without ``.txt``)."""
    return {Path(p).name.removesuffix(".txt"): list_trials(p, root) for p in paths}


def folder_source(
    folder: str | Path, enroll: int = 1, seed: int = 0, level: int | None = None
) -> dict[str, list[EvalTrial]]:
    """A ``<speaker>/<utterance>`` folder (any layout ``ge2e prepare`` reads) -> ``{description: trials}``; speakers
    named by :func:`ge2e.data.readers.name_speakers` (``level`` as there)."""
    from ge2e.data.readers import name_speakers, read_corpus

    utterances = name_speakers(read_corpus(folder), level)
    trials, _ = corpus_trials(utterances, enroll, seed)
    speakers = len({u.key for u in utterances})
    return {f"{folder} ({speakers} speakers, {enroll}-utterance enrollment)": trials}


def calibrate(
    model: Encoder, sources: Mapping[str, Sequence[EvalTrial]], far: float | None = None, progress: bool = False
) -> dict[str, Any]:
    """Score every source's trials and choose the threshold on them all, pooled.

    Args:
        model: the encoder to calibrate.
        sources: name -> trials (:func:`list_sources`, :func:`folder_source`).
        far: target false-accept rate in (0, 1); ``None`` for the equal-error-rate point.
        progress: show a progress bar while embedding.

    Returns:
        The calibration record (JSON-ready): ``threshold``, ``criterion``, ``method`` (one readable line), the
        pooled and per-source error rates at the threshold.

    Raises:
        Ge2eError: no usable trials, or only one kind of trial; AudioError and friends are counted, not raised.
    """
    if far is not None and not 0.0 < far < 1.0:
        raise Ge2eError(f"the target false-accept rate (--far) must be in (0, 1), e.g. 0.01; got {far}")
    store = EmbeddingStore(None, model_fingerprint(model))
    reports, scored = {}, {}
    for name, trials in sources.items():
        reports[name], scored[name] = evaluate(model, trials, store, EvalOptions(progress=progress))
    scores = np.concatenate([s.scores for s in scored.values()])
    labels = np.concatenate([s.labels for s in scored.values()])
    pooled_eer, eer_threshold = eer(scores, labels)
    threshold = eer_threshold if far is None else threshold_at_far(scores, labels, far)
    p_fa, p_miss = error_rates(scores, labels, threshold)
    names = ", ".join(sources)
    chosen = "equal-error-rate point" if far is None else f"lowest threshold with at most {100 * far:g}% false accepts"
    per_source = {}
    for name, report in reports.items():
        fa, miss = error_rates(scored[name].scores, scored[name].labels, threshold)
        per_source[name] = {
            "eer": round(report["eer"], 6),
            "eer_threshold": round(report["eer_threshold"], 6),
            "min_dcf_0.01": round(report["min_dcf_0.01"], 6),
            "false_accept_rate": round(fa, 6),
            "miss_rate": round(miss, 6),
            "n_trials": report["n_trials"],
            "n_target": report["n_target"],
            "skipped_trials": report["skipped_trials"],
            "dropped_trials": dropped_trials(sources[name], report["bad_files"]),
        }
    return {
        "threshold": round(threshold, 6),
        "criterion": "eer" if far is None else "far",
        **({} if far is None else {"target_far": far}),
        "method": f"{chosen} on {len(scores)} pooled trials ({names}); there it gives "
        f"{100 * p_fa:.1f}% false accepts and {100 * p_miss:.1f}% misses",
        "data": list(sources),
        "pooled_eer": round(pooled_eer, 6),
        "false_accept_rate": round(p_fa, 6),
        "miss_rate": round(p_miss, 6),
        "n_trials": len(scores),
        "n_target": int(labels.sum()),
        "lists": per_source,
        "ge2e_version": version("ge2e"),
        "command": "ge2e calibrate",
    }


def dropped_trials(trials: Sequence[EvalTrial], bad_files: Mapping[str, str]) -> list[dict[str, Any]]:
    """The trials that could not be scored, each with the file that failed and why (one entry per trial)."""
    dropped = []
    for trial in trials:
        failed = next((p for p in (*trial.enroll, trial.test) if p in bad_files), None)
        if failed is not None:
            dropped.append(
                {"label": trial.label, "enroll": list(trial.enroll), "test": trial.test, "file": failed,
                 "problem": bad_files[failed]}
            )  # fmt: skip
    return dropped


def store(model_path: str | Path, record: dict[str, Any]) -> Path:
    """Store ``record`` with the model file: inside an exported file, else as the JSON beside the checkpoint
    (tied to its SHA-256, so retrained weights never inherit it). Returns where it went."""
    path = Path(model_path)
    if is_exported(path):
        write_calibration(path, {"model": path.name, **record})
        return path
    out = calibration_path(path)
    text = json.dumps({"model": path.name, "model_sha256": file_sha256(path), **record}, indent=1) + "\n"
    atomic_write(out, lambda f: f.write(text), "w")
    return out

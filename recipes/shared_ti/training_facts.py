"""What a bundled model's training cost, for its model card: the facts a checkpoint and its run's metrics.csv hold
(steps, utterance crops, CPU time, seconds per step), and the compute behind a warm start (``lineage``) or a soup,
back to the first bundled model. ``model_card.py``, ``soup.py`` and ``cut_last.py`` share them."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from ge2e.model import SpeakerEncoder

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "src/ge2e/pretrained/ge2e_small.pt"  # the bundled model
STEP_GAP = 10.0  # a step-to-step gap this many times the median is a pause or restart, not training time


def training_facts(model: SpeakerEncoder, exp: Path | None) -> dict[str, Any]:
    """What the checkpoint says about its training, plus wall time and steps from ``exp/metrics.csv``."""
    meta = getattr(model, "meta", {}) or {}
    cfg = meta.get("config") or {}
    data, optim, loss = cfg.get("data") or {}, cfg.get("optim") or {}, cfg.get("loss") or {}
    a, w = model.audio, model.inference
    facts: dict[str, Any] = {
        "front_end": f"{a.sample_rate / 1000:g} kHz mono, {a.normalization} normalisation to {a.target_dbfs:g} dBFS, "
        f"{'silero VAD trim' if a.vad else 'no VAD'}, {a.n_mels} log-mel bands ({a.window_ms:g} ms window, "
        f"{a.hop_ms:g} ms hop){', mean-normalised' if a.mean_normalize else ''}",
        "windows": f"{w.window_frames}-frame windows, {100 * w.overlap:g}% overlap, d-vectors averaged and "
        "L2-normalised",
        "preset": cfg.get("preset"),
        "model": dict(vars(model.config)),
        "parameters": sum(p.numel() for p in model.parameters()),
        "embedding_size": model.embedding_size,
        "train_splits": [s for src in data.get("sources", []) for s in src.get("splits", [])],
        "val_splits": [s for src in (cfg.get("val") or {}).get("sources", []) for s in src.get("splits", [])],
        "batch": f"{data.get('speakers_per_batch')} speakers x {data.get('utterances_per_speaker')} utterances",
        "crop_frames": f"{data.get('min_frames')}-{data.get('max_frames')}",
        "loss": loss.get("method"),
        "optimizer": f"{optim.get('name')} lr {optim.get('lr')} (halved every {optim.get('lr_halve_every')} steps)",
        "step": meta.get("step"),
        "val_eer": meta.get("val_eer", meta.get("best_val_eer")),
    }
    facts["utterances_per_step"] = (data.get("speakers_per_batch") or 0) * (data.get("utterances_per_speaker") or 0)
    facts["init"] = cfg.get("init") or ""
    if meta.get("soup"):
        facts["soup"] = meta["soup"]
    facts["out_dir"] = cfg.get("out_dir") or ""
    csv_path = exp / "metrics.csv" if exp is not None else None
    if csv_path is not None and csv_path.is_file():
        facts.update(wall_time(csv_path, meta.get("step")))
    return facts


def compute(training: dict[str, Any]) -> dict[str, Any]:
    """Steps, utterances and CPU-hours of a model, its warm-start lineage included."""
    own = {
        "steps": training.get("step") or 0,
        "utterances": (training.get("step") or 0) * training.get("utterances_per_step", 0),
        "hours": training.get("train_seconds", 0) / 3600,
    }
    none = {"steps": 0, "utterances": 0, "hours": 0.0}
    before = training.get("lineage") or none
    soup = (training.get("soup") or {}).get("extra") or none  # the other runs averaged into the weights
    return {k: own[k] + before[k] + soup[k] for k in own}


def lineage(training: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """The compute behind the weights this model was warm-started from (``init`` of its config).

    That is the previous bundled model (its record ``previous``), or a checkpoint cut from another run, which
    carries its own ``lineage`` in its meta; checkpoints of one run share their origin.
    """
    init = Path(training.get("init") or "")
    if not training.get("init"):
        return None
    before = (previous or {}).get("training") or {}
    if before.get("out_dir") == training.get("out_dir"):  # an earlier checkpoint of this same run: same origin
        return before.get("lineage")
    if init.resolve() != DEFAULT_MODEL.resolve():
        return SpeakerEncoder.load(init).meta.get("lineage") if init.is_file() else None
    if not before:
        return None
    if "utterances_per_step" not in before:  # records from before the field: a batch is "N speakers x M ..."
        n, m = (int(x) for x in re.findall(r"\d+", before["batch"])[:2])
        before = {**before, "utterances_per_step": n * m}
    return compute(before)


def step_seconds(steps: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, float]:
    """(seconds of each logged step after the first, the median step): the time since the previous row, where a
    pause or restart (a gap over STEP_GAP x the median) or a jump over missing steps counts as one median step."""
    gaps, consecutive = np.diff(times), np.diff(steps) == 1
    if not consecutive.any():
        return np.zeros(0), 0.0
    median = float(np.median(gaps[consecutive]))
    return np.where(consecutive & (gaps > 0) & (gaps < STEP_GAP * median), gaps, median), median


def wall_time(path: Path, upto: int | None) -> dict[str, Any]:
    """Training seconds up to step ``upto``: the sum of :func:`step_seconds` of metrics.csv."""
    with path.open() as f:
        rows = [(int(r["step"]), float(r["time"])) for r in csv.DictReader(f) if r.get("time")]
    steps, times = np.array([r for r in rows if upto is None or r[0] <= upto]).reshape(-1, 2).T
    seconds, median = step_seconds(steps, times)
    if seconds.size == 0:
        return {}
    total = round(float(seconds.sum()))
    return {"train_seconds": total, "seconds_per_step": round(median, 3), "steps_logged": len(steps)}

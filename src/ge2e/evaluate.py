"""Speaker-verification evaluation on held-out speakers: trials -> embeddings -> scores -> EER / minDCF / plots.

Two ways to get trials:

* a VoxCeleb-format list (``label enroll_path test_path``, see :func:`ge2e.scoring.read_trials`): one
  utterance on each side;
* a corpus folder (:func:`corpus_trials`): each speaker is enrolled with ``K`` utterances whose d-vectors are
  averaged into a speaker model (the paper's enrollment, Sec. 4), and every remaining utterance is a test
  utterance against every speaker model. A test utterance is never part of any enrollment set.

Every file is embedded once per run, and the d-vectors can be kept in an :class:`EmbeddingStore` (an ``.npz``
keyed by absolute path and tied to the model's weights) so a re-run only embeds new files. A file that cannot be
embedded (missing, corrupt, silent) is skipped: the trials that need it are dropped, counted and reported, and
the evaluation goes on with the others.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ge2e.data.cache import FeatureCache
from ge2e.data.readers import Utterance
from ge2e.errors import Ge2eError
from ge2e.files import atomic_write
from ge2e.inference import Encoder, as_inference, average_embeddings, embed_mels
from ge2e.inference import model_fingerprint as model_fingerprint  # the stores' key; recipes import it from here
from ge2e.metrics import det_curve, eer, min_dcf
from ge2e.scoring import as_norm, cosine_scores, read_trials, s_norm

logger = logging.getLogger(__name__)

REPORT_VERSION = 1
DCF_PRIORS = (0.01, 0.05)
_FEATURE_BATCH = 64  # utterances per encoder call when embedding cached features


@dataclass(frozen=True, slots=True)
class EvalTrial:
    """One trial. ``enroll`` holds 1 path (trial lists) or the K enrollment paths of a speaker model (corpus)."""

    label: int
    enroll: tuple[str, ...]
    test: str


# ------------------------------------------------------------------------------------------------ embeddings


class EmbeddingStore:
    """Path -> ``(D,)`` float32 d-vector, optionally persisted as an ``.npz`` tied to one model fingerprint.

    Args:
        path: the ``.npz`` file, or None for an in-memory store. A file made by another model (or unreadable)
            is ignored with a warning and overwritten by :meth:`save`.
        fingerprint: :func:`ge2e.inference.model_fingerprint` of the model whose d-vectors are stored.
    """

    def __init__(self, path: str | Path | None, fingerprint: str) -> None:
        self.path = Path(path) if path is not None else None
        self.fingerprint = fingerprint
        self.vectors: dict[str, np.ndarray] = {}
        self.reused = 0
        if self.path is not None and self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                if str(data["fingerprint"]) != self.fingerprint:
                    logger.info("%s: made by another model; embedding again", self.path)
                    return
                self.vectors = dict(zip(data["paths"].tolist(), data["embeddings"], strict=True))
        except (OSError, KeyError, ValueError) as exc:
            logger.warning("%s: unreadable embedding store (%s); embedding again", self.path, exc)

    def __contains__(self, path: str) -> bool:
        return path in self.vectors

    def __getitem__(self, path: str) -> np.ndarray:
        return self.vectors[path]

    def save(self) -> None:
        """Write the store atomically (temp file in the same folder, then ``os.replace``)."""
        if self.path is None:
            return
        paths = sorted(self.vectors)
        dim = next(iter(self.vectors.values())).shape[0] if paths else 0
        emb = np.stack([self.vectors[p] for p in paths]) if paths else np.zeros((0, dim), np.float32)
        atomic_write(
            self.path,
            lambda f: np.savez(f, paths=np.asarray(paths, dtype=str), embeddings=emb, fingerprint=self.fingerprint),
        )


class FeatureLookup:
    """Cached log-mel features of known files (from ``ge2e prepare``), so evaluation can skip the front end.

    Only original (non-augmented) utterances are used. Raises :class:`Ge2eError` when a cache was made with a
    front end other than the model's, since its features would not match what the model expects.
    """

    def __init__(self, caches: Sequence[FeatureCache], model: Encoder) -> None:
        self.where: dict[str, tuple[FeatureCache, int]] = {}
        for cache in caches:
            if cache.audio_config != model.audio:
                raise Ge2eError(f"{cache.root}: features made with another audio front end than the model's")
            for i, u in enumerate(cache.utterances):
                if not u.augment:
                    self.where[os.path.abspath(u.path)] = (cache, i)

    def __contains__(self, path: str) -> bool:
        return path in self.where

    def features(self, path: str) -> torch.Tensor:
        cache, i = self.where[path]
        return torch.from_numpy(cache.features(i))


def embed_paths(
    model: Encoder,
    paths: Iterable[str],
    store: EmbeddingStore,
    features: FeatureLookup | None = None,
    progress: bool = False,
) -> dict[str, str]:
    """Embed every path not yet in ``store`` (each once); returns ``{path: problem}`` for the files that failed.

    Paths must be absolute strings (the store's keys). Files found in ``features`` are embedded from their
    cached frames; the others go through the audio front end (:meth:`ge2e.inference.Inference.embed_files`).
    """
    todo = [p for p in dict.fromkeys(paths) if p not in store]
    store.reused += len(dict.fromkeys(paths)) - len(todo)
    cached = [p for p in todo if features is not None and p in features]
    for lo in range(0, len(cached), _FEATURE_BATCH):
        chunk = cached[lo : lo + _FEATURE_BATCH]
        emb = embed_mels(model, [features.features(p) for p in chunk], model.inference).numpy()
        store.vectors.update(zip(chunk, emb, strict=True))
    rest = [p for p in todo if features is None or p not in features]
    if not rest:
        return {}
    result = as_inference(model).embed_files(rest, progress=progress)
    store.vectors.update(result.as_dict())
    return result.errors


# ------------------------------------------------------------------------------------------------------ trials


def list_trials(path: str | Path, root: str | Path | None = None) -> list[EvalTrial]:
    """Trials of a VoxCeleb-format list; ``root`` defaults to :func:`default_root` of the list."""
    root = default_root(path) if root is None else Path(root)
    return [EvalTrial(t.label, (os.path.abspath(t.enroll),), os.path.abspath(t.test)) for t in read_trials(path, root)]


def default_root(trials_path: str | Path) -> Path:
    """Folder the paths of a trial list are relative to when no root is given.

    The official lists live in ``<data>/trials/`` with paths relative to ``<data>``, so a list inside a folder
    named ``trials`` resolves against that folder's parent; any other list against its own folder.
    """
    folder = Path(trials_path).resolve().parent
    return folder.parent if folder.name == "trials" else folder


def corpus_trials(
    utterances: Sequence[Utterance], enroll: int, seed: int = 0, by_label: bool = False
) -> tuple[list[EvalTrial], int]:
    """Enrollment/test trials of a corpus: K-utterance speaker models against every held-out utterance.

    Each speaker (with ``by_label``: each (speaker, keyword) pair, and trials only within one keyword, the
    text-dependent setting) with at least ``enroll + 1`` utterances gets a speaker model from ``enroll``
    utterances drawn with ``seed``; its other utterances are test utterances. Every test utterance is scored
    against every speaker model (of the same keyword with ``by_label``): target when the speaker matches.

    Returns:
        ``(trials, left_out)``: the trials, and how many speakers (or speaker-keyword pairs) had too few
        utterances to be used.
    """
    if enroll < 1:
        raise Ge2eError(f"--enroll must be >= 1, got {enroll}")
    units: dict[tuple[str, str], list[str]] = {}
    for u in sorted(utterances, key=lambda u: u.path):
        units.setdefault((u.key, u.label if by_label else ""), []).append(os.path.abspath(u.path))
    rng = np.random.default_rng(seed)
    models: dict[tuple[str, str], tuple[str, ...]] = {}
    tests: list[tuple[tuple[str, str], str]] = []
    for unit, paths in sorted(units.items()):
        if len(paths) <= enroll:
            continue
        order = rng.permutation(len(paths))
        models[unit] = tuple(paths[i] for i in sorted(order[:enroll]))
        tests += [(unit, paths[i]) for i in sorted(order[enroll:])]
    trials = [
        EvalTrial(int(unit == tested), chosen, path)
        for unit, chosen in models.items()
        for tested, path in tests
        if unit[1] == tested[1]
    ]
    return trials, len(units) - len(models)


# ----------------------------------------------------------------------------------------------------- scoring


@dataclass
class Scored:
    """Scores of the trials whose files all embedded; ``enroll``/``test`` are their ``(n, D)`` embeddings."""

    trials: list[EvalTrial]
    scores: np.ndarray
    labels: np.ndarray
    enroll: np.ndarray
    test: np.ndarray
    skipped: int = 0


def score_trials(trials: Sequence[EvalTrial], store: EmbeddingStore) -> Scored:
    """Cosine scores of every trial whose files are in ``store``; the others are counted in ``skipped``."""
    kept = [t for t in trials if t.test in store and all(p in store for p in t.enroll)]
    if not kept:
        raise Ge2eError("no trial left to score: every trial needs a file that could not be embedded")
    enroll = np.stack([average_embeddings([store[p] for p in t.enroll]) for t in kept])
    test = np.stack([store[t.test] for t in kept])
    labels = np.asarray([t.label for t in kept])
    return Scored(kept, cosine_scores(enroll, test), labels, enroll, test, len(trials) - len(kept))


def cohort_embeddings(
    model: Encoder, cache_dir: str | Path, splits: Sequence[str], store: EmbeddingStore, per_speaker: int = 10
) -> np.ndarray:
    """Impostor cohort for S-norm/AS-norm: one speaker model per training speaker -> ``(C, D)``.

    Each speaker of ``splits`` (official split names such as ``LibriSpeech.train``, or speaker-list files) in
    the feature cache contributes the mean d-vector of its first ``per_speaker`` original utterances.
    """
    from ge2e.data.splits import resolve_speakers

    cache = FeatureCache(cache_dir)
    lookup = FeatureLookup([cache], model)
    groups: dict[str, list[str]] = {}
    for i in cache.select(resolve_speakers(list(splits)), augmented=False):
        groups.setdefault(cache.utterances[i].key, []).append(os.path.abspath(cache.utterances[i].path))
    chosen = {spk: paths[:per_speaker] for spk, paths in sorted(groups.items())}
    embed_paths(model, [p for paths in chosen.values() for p in paths], store, lookup)
    cohort = [average_embeddings([store[p] for p in paths]) for paths in chosen.values()]
    if len(cohort) < 2:
        raise Ge2eError(f"{cache_dir}: the cohort splits {', '.join(splits) or '(all)'} give {len(cohort)} speaker(s)")
    return np.stack(cohort)


# -------------------------------------------------------------------------------------------------- evaluation


@dataclass
class EvalOptions:
    """What :func:`evaluate` does besides cosine scoring."""

    norm: str = "none"  # none | snorm | asnorm
    cohort_cache: str | None = None
    cohort_splits: list[str] = field(default_factory=list)
    cohort_per_speaker: int = 10
    top_n: int = 100
    features: list[str] = field(default_factory=list)  # feature caches to read known files from
    progress: bool = False


def evaluate(
    model: Encoder,
    trials: Sequence[EvalTrial],
    store: EmbeddingStore,
    options: EvalOptions | None = None,
) -> tuple[dict[str, Any], Scored]:
    """Embed, score and measure ``trials``.

    Returns:
        ``(report, scored)``: the report dict (EER and minDCF as fractions, counts, skipped trials and the
        files behind them) and the scored trials.
    """
    options = options or EvalOptions()
    if options.norm not in ("none", "snorm", "asnorm"):
        raise Ge2eError(f"unknown score normalisation {options.norm!r}; choose none, snorm or asnorm")
    start = time.perf_counter()
    features = FeatureLookup([FeatureCache(f) for f in options.features], model) if options.features else None
    paths = [p for t in trials for p in (*t.enroll, t.test)]
    bad = embed_paths(model, paths, store, features, options.progress)
    embed_seconds = time.perf_counter() - start
    scored = score_trials(trials, store)
    extra: dict[str, Any] = {}
    if options.norm != "none":
        if not options.cohort_cache:
            raise Ge2eError(f"--norm {options.norm} needs a cohort: pass --cohort-cache (and --cohort-splits)")
        cohort = cohort_embeddings(
            model, options.cohort_cache, options.cohort_splits, store, options.cohort_per_speaker
        )
        extra = {"cohort_size": len(cohort), "cohort_splits": list(options.cohort_splits)}
        if options.norm == "snorm":
            scored.scores = s_norm(scored.scores, scored.enroll, scored.test, cohort)
        else:
            top_n = min(options.top_n, len(cohort))
            if top_n < options.top_n:
                logger.warning("cohort has %d speakers: AS-norm uses top %d, not %d", len(cohort), top_n, options.top_n)
            scored.scores = as_norm(scored.scores, scored.enroll, scored.test, cohort, top_n)
            extra["top_n"] = top_n
    report = _measure(scored)
    report.update(
        norm=options.norm,
        **extra,
        skipped_trials=scored.skipped,
        bad_files=dict(sorted(bad.items())),
        files_embedded=len(dict.fromkeys(paths)) - len(bad),
        embed_seconds=round(embed_seconds, 3),
    )
    return report, scored


def _measure(scored: Scored) -> dict[str, Any]:
    n_target = int(scored.labels.sum())
    if n_target in (0, len(scored.labels)):
        kind = "target" if n_target else "non-target"
        raise Ge2eError(f"only {kind} trials left to score ({len(scored.labels)}); EER needs both kinds")
    rate, threshold = eer(scored.scores, scored.labels)
    out: dict[str, Any] = {
        "eer": rate,
        "eer_threshold": threshold,
        "n_trials": len(scored.labels),
        "n_target": n_target,
        "n_nontarget": len(scored.labels) - n_target,
    }
    for prior in DCF_PRIORS:
        cost, at = min_dcf(scored.scores, scored.labels, p_target=prior)
        out[f"min_dcf_{prior:g}"] = cost
        out[f"min_dcf_{prior:g}_threshold"] = at
    return out


def write_outputs(
    out_dir: str | Path, report: dict[str, Any], scored: Scored, title: str = "", calibrated: float | None = None
) -> dict[str, str]:
    """Write ``report.json``, ``scores.tsv``, ``det.png`` and ``score_histogram.png`` (each atomically).

    The histogram marks the EER point of these trials and, when given, the model's ``calibrated`` threshold:
    the one ``verify`` decides with.

    Returns the name -> path mapping of what was written.
    """
    from ge2e.plots import plot_det, plot_score_histogram

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: str(out / name) for name in ("report.json", "scores.tsv", "det.png", "score_histogram.png")}
    p_fa, p_miss, _ = det_curve(scored.scores, scored.labels)
    label = f"{title or 'model'} (EER {100 * report['eer']:.2f}%)"
    plot_det({label: (p_fa, p_miss)}, files["det.png"])
    lines = {"EER point of these trials": report["eer_threshold"]}
    if calibrated is not None:
        lines["model's calibrated threshold (verify)"] = calibrated
    plot_score_histogram(scored.scores, scored.labels, lines, files["score_histogram.png"])
    rows = (
        f"{t.label}\t{s:.6f}\t{','.join(t.enroll)}\t{t.test}\n"
        for t, s in zip(scored.trials, scored.scores, strict=True)
    )
    scores_text = "label\tscore\tenroll\ttest\n" + "".join(rows)
    atomic_write(files["scores.tsv"], lambda f: f.write(scores_text), "w")
    report_text = json.dumps({"version": REPORT_VERSION, **report}, indent=1) + "\n"
    atomic_write(files["report.json"], lambda f: f.write(report_text), "w")
    return files

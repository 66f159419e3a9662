"""``prepare``: compute the features of a corpus into a feature cache (:mod:`ge2e.data.cache`), resumably.

:func:`prepare` only computes (file, augmentation) pairs that no complete shard holds yet, in path order, so
re-running it resumes an interrupted run, or extends a cache with new files. It checks that the cache folder
can be written before any work starts, and a write failure (read-only, disk full) is one line naming the file.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ge2e.config import AudioConfig
from ge2e.data.augment import list_noise_files, parse_augment, pseudo_speaker, variants
from ge2e.data.cache import (
    CACHE_FORMAT,
    CACHE_VERSION,
    COLUMNS,
    ERRORS,
    FEATURE_DTYPE,
    INDEX,
    SHARD_FILE,
    read_index,
    shard_complete,
    write_index,
    write_tsv,
)
from ge2e.data.featurize import Featurizer, Job, results
from ge2e.data.readers import Utterance, read_tsv
from ge2e.decoding import FFMPEG_EXTENSIONS, require_ffmpeg
from ge2e.errors import ConfigError, Ge2eError
from ge2e.files import atomic_write, check_writable, is_temp_file, remove_stale_temp_files


@dataclass
class PrepareReport:
    """Outcome of :func:`prepare`. Counts cover the whole cache; ``new_*`` only what this run computed."""

    out_dir: str
    utterances: int = 0
    frames: int = 0
    hours: float = 0.0  # of speech kept after VAD: frames x hop
    new_utterances: int = 0
    new_shards: int = 0
    reused_shards: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, problem) of every uncachable file
    seconds: float = 0.0  # wall-clock time of this run


def prepare(
    utterances: Iterable[Utterance],
    out_dir: str | Path,
    cfg: AudioConfig | None = None,
    workers: int = 2,
    shard_size: int = 500,
    progress: bool = True,
    augment: str | Sequence[str] | None = None,
    noise_dir: str | Path | None = None,
    seed: int = 0,
) -> PrepareReport:
    """Compute and cache the features of ``utterances`` (plus augmented copies) in ``out_dir``.

    Files are sorted by path and cut into shards of ``shard_size`` (file, augmentation) jobs, computed by
    ``workers`` processes (in this process when ``workers`` <= 1). Jobs already held by a complete shard are
    skipped, so re-running resumes or extends the cache. A file that fails (any AudioError: corrupt, empty,
    silent, too short) is recorded in errors.tsv and the report; it never aborts the run.

    Args:
        augment: kinds to add as extra utterances, e.g. ``["speed", "noise", "reverb"]`` (see
            :mod:`ge2e.data.augment`); off by default.
        noise_dir: folder of noise recordings for ``noise`` (default: generated coloured noise), of speech
            recordings for ``babble`` (required there).
        seed: augmentation seed; each (file, variant) gets its own generator derived from it.

    Raises:
        ConfigError: ``out_dir`` holds a cache made with a different AudioConfig, or bad ``shard_size``.
        Ge2eError: ``out_dir`` holds something that is not a ge2e cache, or m4a input without ffmpeg.
        OutputError: ``out_dir`` cannot be written (checked before any work) or a write fails (disk full).
    """
    start = time.monotonic()
    cfg = cfg or AudioConfig()
    if shard_size < 1:
        raise ConfigError(f"shard_size must be >= 1, got {shard_size}")
    kinds = parse_augment(augment)
    if "babble" in kinds and noise_dir is None:
        raise Ge2eError("--augment babble needs --noise-dir: a folder of speech recordings of other people")
    out = check_writable(out_dir, folder=True)
    index = _open_for_writing(out, cfg)
    kept = [s for s in index["shards"] if shard_complete(out, s["name"])]
    if len(kept) != len(index["shards"]):
        index["shards"] = kept
        write_index(out, index)
    _remove_stale_files(out, {s["name"] for s in kept})

    done = _done_jobs(out, kept)
    jobs = _pending_jobs(utterances, kinds, done)
    if any(Path(u.path).suffix.lower() in FFMPEG_EXTENSIONS for u, _ in jobs):
        require_ffmpeg()
    noise_files = list_noise_files(noise_dir) if noise_dir is not None and jobs else []
    featurizer = Featurizer(dataclasses.asdict(cfg), noise_files, seed)
    chunks = [jobs[i : i + shard_size] for i in range(0, len(jobs), shard_size)]
    first = 1 + max((int(s["name"].removeprefix("shard-")) for s in kept), default=-1)

    report = PrepareReport(out_dir=str(out), reused_shards=len(kept))
    bar = tqdm(total=len(jobs), desc=f"prepare {out.name}", unit="file", disable=not progress)
    jobs_results = results([(u.path, v) for u, v in jobs], featurizer, workers)
    try:
        for number, chunk in enumerate(chunks, start=first):
            entry = _write_shard(out, f"shard-{number:05d}", chunk, jobs_results, bar)
            index["shards"].append(entry)
            write_index(out, index)
            report.new_shards += 1
            report.new_utterances += entry["utterances"]
    finally:
        jobs_results.close()  # shuts the pool down, also on KeyboardInterrupt
        bar.close()

    _summarise(out, index, cfg, report)
    report.seconds = time.monotonic() - start
    return report


def _open_for_writing(out: Path, cfg: AudioConfig) -> dict[str, Any]:
    """The existing index (same AudioConfig required) or a fresh one; refuses non-empty foreign folders."""
    index = read_index(out)
    wanted = dataclasses.asdict(cfg)
    if index is None:
        foreign = [p.name for p in out.iterdir() if not _cache_file(p.name) and p.name not in (INDEX, ERRORS)]
        if foreign:
            raise Ge2eError(f"{out}: folder is not empty and not a ge2e feature cache (holds {foreign[0]})")
        return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "audio_config": wanted, "shards": []}
    if index.get("audio_config") != wanted:
        diff = sorted(k for k in wanted if index.get("audio_config", {}).get(k) != wanted[k])
        raise ConfigError(
            f"{out}: cache was made with a different AudioConfig ({', '.join(diff) or 'fields'} differ); "
            "use a new folder"
        )
    return index


def _cache_file(name: str) -> bool:
    return SHARD_FILE.match(name) is not None or is_temp_file(name)


def _remove_stale_files(out: Path, complete: set[str]) -> None:
    """Delete shard files of shards that never completed and temp files of killed runs: their leftovers."""
    for p in out.iterdir():
        m = SHARD_FILE.match(p.name)
        if m and (m[3] or f"shard-{m[1]}" not in complete):
            p.unlink()
    (out / f"{INDEX}.tmp").unlink(missing_ok=True)
    remove_stale_temp_files(out)


def _done_jobs(out: Path, shards: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(path, variant) of every job a complete shard holds, cached or failed."""
    done = {(e[0], e[1]) for s in shards for e in s["errors"]}
    for s in shards:
        done.update((r["path"], r["augment"]) for r in read_tsv(out / f"{s['name']}.tsv"))
    return done


def _pending_jobs(utterances: Iterable[Utterance], kinds: list[str], done: set[tuple[str, str]]) -> list[Job]:
    """Jobs not yet done, sorted by (path, variant) so that chunking into shards is deterministic."""
    jobs: dict[tuple[str, str], Job] = {}
    for utt in utterances:
        for variant in ["", *variants(kinds)]:
            if (utt.path, variant) not in done:
                jobs.setdefault((utt.path, variant), (utt, variant))
    return [jobs[k] for k in sorted(jobs)]


def _write_shard(
    out: Path,
    name: str,
    chunk: list[Job],
    results: Iterator[tuple[np.ndarray | None, str]],
    bar: tqdm,
) -> dict[str, Any]:
    """Take ``len(chunk)`` results, write ``name``.npy then ``name``.tsv; return the shard's index entry."""
    feats, rows, errors, offset = [], [], [], 0
    for utt, variant in chunk:
        array, problem = next(results)
        bar.update()
        if array is None:
            errors.append([utt.path, variant, problem])
            continue
        speaker = pseudo_speaker(utt.speaker, variant)
        rows.append([utt.path, speaker, utt.label, utt.corpus, offset, len(array), variant])
        feats.append(array)
        offset += len(array)
    n_mels = feats[0].shape[1] if feats else 0
    data = np.concatenate(feats) if feats else np.zeros((0, n_mels), FEATURE_DTYPE)
    atomic_write(out / f"{name}.npy", lambda f: np.save(f, data))
    write_tsv(out / f"{name}.tsv", COLUMNS, rows)  # last: its presence marks the shard complete
    return {"name": name, "utterances": len(rows), "frames": offset, "errors": errors}


def _problem(variant: str, problem: str) -> str:
    return f"[{variant}] {problem}" if variant else problem


def _summarise(out: Path, index: dict[str, Any], cfg: AudioConfig, report: PrepareReport) -> None:
    """Fill the whole-cache totals of ``report`` and rewrite errors.tsv from the index."""
    shards = index["shards"]
    report.utterances = sum(s["utterances"] for s in shards)
    report.frames = sum(s["frames"] for s in shards)
    report.hours = report.frames * cfg.hop_ms / 1000 / 3600
    report.skipped = sorted((p, _problem(v, problem)) for s in shards for p, v, problem in s["errors"])
    write_tsv(out / ERRORS, ("path", "problem"), report.skipped)

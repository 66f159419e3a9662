"""Feature cache: VAD + log-mel computed once per file, stored as float16 shards, read memory-mapped.

Layout of a cache folder::

    index.json          format, version, AudioConfig, shard list (with the files each shard could not cache)
    shard-00000.npy     (total_frames, n_mels) float16: the shard's utterances concatenated along time
    shard-00000.tsv     one row per cached utterance: path speaker label corpus offset num_frames augment
    errors.tsv          path problem: every file that could not be cached (bad audio, no speech, too short)

A shard is complete when its .tsv exists and index.json lists it: the .npy is written first, then the .tsv,
then the index, each atomically (temp file + os.replace), so a killed run leaves at worst a shard that the next
run discards and recomputes. :func:`prepare` only computes (file, augmentation) pairs that no complete shard
holds yet, in path order, so re-running it resumes an interrupted run, or extends a cache with new files.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import multiprocessing
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ge2e.config import AudioConfig
from ge2e.data.augment import augment as augment_wav
from ge2e.data.augment import list_noise_files, parse_augment, pseudo_speaker, rng_for, variants
from ge2e.data.readers import FFMPEG_EXTENSIONS, Utterance, require_ffmpeg
from ge2e.errors import AudioError, ConfigError, Ge2eError

logger = logging.getLogger(__name__)

CACHE_FORMAT = "ge2e.FeatureCache"
CACHE_VERSION = 1
INDEX = "index.json"
ERRORS = "errors.tsv"
COLUMNS = ("path", "speaker", "label", "corpus", "offset", "num_frames", "augment")
FEATURE_DTYPE = np.float16  # log-mel values are O(10): float16 keeps ~3 significant digits at half the size
_SHARD = re.compile(r"^shard-(\d{5})\.(npy|tsv)(\.tmp)?$")

Job = tuple[Utterance, str]  # (file, augmentation variant; "" for the original)


@dataclass(frozen=True)
class CachedUtterance:
    """One cached utterance: where its frames are (shard, offset, num_frames) and who speaks it."""

    path: str
    speaker: str
    label: str
    corpus: str
    augment: str  # "" for the original recording, else the variant (speed0.9, speed1.1, noise, reverb)
    shard: int
    offset: int
    num_frames: int

    @property
    def key(self) -> str:
        """Globally unique speaker key ``"<corpus>/<speaker>"`` (speed copies are their own speakers)."""
        return f"{self.corpus}/{self.speaker}"

    @property
    def source_speaker(self) -> str:
        """The recorded speaker's id, also for speed-perturbed copies (``"103_sp0.9"`` -> ``"103"``)."""
        return self.speaker.rsplit("_sp", 1)[0] if self.augment.startswith("speed") else self.speaker


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


# ------------------------------------------------------------------------------------------------- workers


class _Featurizer:
    """Turns one job into float16 features, or an error message; runs in the worker processes."""

    def __init__(self, cfg: dict[str, Any], noise_files: Sequence[str], seed: int) -> None:
        self.cfg = AudioConfig(**cfg)
        self.noise_files = list(noise_files)
        self.seed = seed

    def __call__(self, job: tuple[str, str]) -> tuple[np.ndarray | None, str]:
        """(path, variant) -> ((T, n_mels) float16, "") or (None, problem)."""
        from ge2e.audio import load_audio, preprocess

        path, variant = job
        sr = self.cfg.sample_rate
        try:
            if not variant:
                feats = preprocess(path, cfg=self.cfg)
            else:
                wav = load_audio(path, target_sr=sr)
                wav = augment_wav(wav, sr, variant, rng_for(self.seed, path, variant), self.noise_files)
                feats = preprocess(wav, sr=sr, cfg=self.cfg, name=path)
        except AudioError as exc:
            return None, exc.problem
        except Exception as exc:  # a library failing on one odd file must not abort an hour-long run
            logger.warning("%s: unexpected %s: %s", path, type(exc).__name__, exc)
            return None, f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return feats.astype(FEATURE_DTYPE), ""


_worker: _Featurizer | None = None


def _init_worker(cfg: dict[str, Any], noise_files: Sequence[str], seed: int) -> None:
    import torch

    # one thread per process: N workers x M intra-op threads would oversubscribe the cores
    torch.set_num_threads(1)
    global _worker
    _worker = _Featurizer(cfg, noise_files, seed)


def _run_job(job: tuple[str, str]) -> tuple[np.ndarray | None, str]:
    assert _worker is not None, "worker not initialised"
    return _worker(job)


def _results(
    jobs: list[tuple[str, str]], featurizer: _Featurizer, workers: int
) -> Iterator[tuple[np.ndarray | None, str]]:
    """Results of ``jobs`` in order: in this process when ``workers`` <= 1, else in a spawned process pool."""
    if workers <= 1:
        yield from map(featurizer, jobs)
        return
    # spawn, not fork: forking a process that has started torch threads can deadlock the children
    ctx = multiprocessing.get_context("spawn")
    init = (dataclasses.asdict(featurizer.cfg), featurizer.noise_files, featurizer.seed)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=init)
    try:
        yield from pool.map(_run_job, jobs, chunksize=4)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------- file I/O


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on ``<path>.tmp`` (binary), then rename it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def _write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    _atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _read_index(out_dir: Path) -> dict[str, Any] | None:
    """The parsed index.json, None when there is none; Ge2eError when it is not a ge2e feature cache."""
    path = out_dir / INDEX
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise Ge2eError(f"{path}: unreadable cache index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
        raise Ge2eError(f"{out_dir}: not a ge2e feature cache (index.json has another format)")
    if index.get("version") != CACHE_VERSION:
        raise Ge2eError(f"{out_dir}: feature cache version {index.get('version')}, this ge2e reads {CACHE_VERSION}")
    return index


def _write_index(out_dir: Path, index: dict[str, Any]) -> None:
    _atomic_write(out_dir / INDEX, lambda f: f.write(json.dumps(index, indent=1).encode()))


def _shard_complete(out_dir: Path, name: str) -> bool:
    return (out_dir / f"{name}.tsv").is_file() and (out_dir / f"{name}.npy").is_file()


# --------------------------------------------------------------------------------------------------- prepare


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
        noise_dir: folder of noise recordings for ``noise`` (default: generated coloured noise).
        seed: augmentation seed; each (file, variant) gets its own generator derived from it.

    Raises:
        ConfigError: ``out_dir`` holds a cache made with a different AudioConfig, or bad ``shard_size``.
        Ge2eError: ``out_dir`` holds something that is not a ge2e cache, or m4a input without ffmpeg.
    """
    start = time.monotonic()
    cfg = cfg or AudioConfig()
    if shard_size < 1:
        raise ConfigError(f"shard_size must be >= 1, got {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = _open_for_writing(out, cfg)
    kept = [s for s in index["shards"] if _shard_complete(out, s["name"])]
    if len(kept) != len(index["shards"]):
        index["shards"] = kept
        _write_index(out, index)
    _remove_stale_files(out, {s["name"] for s in kept})

    done = _done_jobs(out, kept)
    jobs = _pending_jobs(utterances, parse_augment(augment), done)
    if any(Path(u.path).suffix.lower() in FFMPEG_EXTENSIONS for u, _ in jobs):
        require_ffmpeg()
    noise_files = list_noise_files(noise_dir) if noise_dir is not None and jobs else []
    featurizer = _Featurizer(dataclasses.asdict(cfg), noise_files, seed)
    chunks = [jobs[i : i + shard_size] for i in range(0, len(jobs), shard_size)]
    first = 1 + max((int(s["name"].removeprefix("shard-")) for s in kept), default=-1)

    report = PrepareReport(out_dir=str(out), reused_shards=len(kept))
    bar = tqdm(total=len(jobs), desc=f"prepare {out.name}", unit="file", disable=not progress)
    results = _results([(u.path, v) for u, v in jobs], featurizer, workers)
    try:
        for number, chunk in enumerate(chunks, start=first):
            entry = _write_shard(out, f"shard-{number:05d}", chunk, results, bar)
            index["shards"].append(entry)
            _write_index(out, index)
            report.new_shards += 1
            report.new_utterances += entry["utterances"]
    finally:
        results.close()  # shuts the pool down, also on KeyboardInterrupt
        bar.close()

    _summarise(out, index, cfg, report)
    report.seconds = time.monotonic() - start
    return report


def _open_for_writing(out: Path, cfg: AudioConfig) -> dict[str, Any]:
    """The existing index (same AudioConfig required) or a fresh one; refuses non-empty foreign folders."""
    index = _read_index(out)
    wanted = dataclasses.asdict(cfg)
    if index is None:
        foreign = [p.name for p in out.iterdir() if not _SHARD.match(p.name) and p.name not in (INDEX, ERRORS)]
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


def _remove_stale_files(out: Path, complete: set[str]) -> None:
    """Delete shard files (and temp files) of shards that never completed: an interrupted run's leftovers."""
    for p in out.iterdir():
        m = _SHARD.match(p.name)
        if m and (m[3] or f"shard-{m[1]}" not in complete):
            p.unlink()
    (out / f"{INDEX}.tmp").unlink(missing_ok=True)


def _done_jobs(out: Path, shards: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(path, variant) of every job a complete shard holds, cached or failed."""
    done = {(e[0], e[1]) for s in shards for e in s["errors"]}
    for s in shards:
        done.update((r["path"], r["augment"]) for r in _read_tsv(out / f"{s['name']}.tsv"))
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
    _atomic_write(out / f"{name}.npy", lambda f: np.save(f, data))
    _write_tsv(out / f"{name}.tsv", COLUMNS, rows)  # last: its presence marks the shard complete
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
    _write_tsv(out / ERRORS, ("path", "problem"), report.skipped)


# ------------------------------------------------------------------------------------------------- reading


class FeatureCache:
    """Read-only view of a prepared cache; features are memory-mapped, shards opened on first use.

    Pickling keeps only the folder and the utterance table (no open memmaps), so passing a cache to
    DataLoader workers is cheap; each worker maps the shards it touches.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.root = Path(out_dir)
        if not self.root.is_dir():
            raise Ge2eError(f"{self.root}: feature cache folder not found (run `ge2e prepare` first)")
        index = _read_index(self.root)
        if index is None:
            raise Ge2eError(f"{self.root}: not a ge2e feature cache (no {INDEX}; run `ge2e prepare` first)")
        self._audio = dict(index["audio_config"])
        self._shards: list[str] = [s["name"] for s in index["shards"]]
        self.utterances: list[CachedUtterance] = []
        for number, name in enumerate(self._shards):
            if not _shard_complete(self.root, name):
                raise Ge2eError(f"{self.root}: shard {name} is incomplete; re-run `ge2e prepare` to finish it")
            for r in _read_tsv(self.root / f"{name}.tsv"):
                self.utterances.append(
                    CachedUtterance(
                        r["path"], r["speaker"], r["label"], r["corpus"], r["augment"],
                        number, int(r["offset"]), int(r["num_frames"]),
                    )
                )  # fmt: skip
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.utterances)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}  # memmaps are reopened lazily in the receiving process
        return state

    @property
    def audio_config(self) -> AudioConfig:
        """The front-end settings the features were computed with."""
        return AudioConfig(**self._audio)

    @property
    def speaker_keys(self) -> list[str]:
        """Sorted unique ``"<corpus>/<speaker>"`` keys (speed-perturbed copies count as speakers)."""
        return sorted({u.key for u in self.utterances})

    @property
    def frames(self) -> int:
        return sum(u.num_frames for u in self.utterances)

    def _shard(self, number: int) -> np.ndarray:
        if number not in self._maps:
            self._maps[number] = np.load(self.root / f"{self._shards[number]}.npy", mmap_mode="r")
        return self._maps[number]

    def features(self, i: int) -> np.ndarray:
        """Frames of utterance ``i`` -> (T, n_mels) float32 (a copy; the cache itself is float16)."""
        u = self.utterances[i]
        return np.asarray(self._shard(u.shard)[u.offset : u.offset + u.num_frames], dtype=np.float32)

    def select(self, speakers: set[str] | None = None, label: str | None = None, augmented: bool = True) -> list[int]:
        """Indices of the utterances that match every given filter.

        Args:
            speakers: ids or ``corpus/speaker`` keys to keep (e.g. an official split's speaker list); an
                augmented copy is kept when its source speaker is listed, so ``{"103"}`` also keeps
                ``"103_sp0.9"``.
            label: keep only this keyword label (text-dependent corpora).
            augmented: False drops augmented copies (for validation and test sets).
        """
        out = []
        for i, u in enumerate(self.utterances):
            if label is not None and u.label != label:
                continue
            if not augmented and u.augment:
                continue
            if speakers is not None and not _speaker_names(u) & speakers:
                continue
            out.append(i)
        return out


def _speaker_names(u: CachedUtterance) -> set[str]:
    """Every name a speaker list may use for ``u``: id and key, of the copy and of its source speaker."""
    return {u.speaker, u.key, u.source_speaker, f"{u.corpus}/{u.source_speaker}"}

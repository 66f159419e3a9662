"""Feature cache: the on-disk format, its index, and :class:`FeatureCache`, the memory-mapped reader.

Layout of a cache folder::

    index.json          format, version, AudioConfig, shard list (with the files each shard could not cache)
    shard-00000.npy     (total_frames, n_mels) float16: the shard's utterances concatenated along time
    shard-00000.tsv     one row per cached utterance: path speaker label corpus offset num_frames augment
    errors.tsv          path problem: every file that could not be cached (bad audio, no speech, too short)

A shard is complete when its .tsv exists and index.json lists it: the .npy is written first, then the .tsv,
then the index, each atomically (:mod:`ge2e.files`: temp file, fsync, rename), so a killed run leaves at worst
a shard that the next run discards and recomputes. Writing lives in :mod:`ge2e.data.prepare`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ge2e.config import AudioConfig
from ge2e.data.readers import read_tsv
from ge2e.errors import Ge2eError
from ge2e.files import atomic_write

CACHE_FORMAT = "ge2e.FeatureCache"
CACHE_VERSION = 1
INDEX = "index.json"
ERRORS = "errors.tsv"
FEATURE_DTYPE = np.float16  # log-mel values are O(10): float16 keeps ~3 significant digits at half the size
COLUMNS = ("path", "speaker", "label", "corpus", "offset", "num_frames", "augment")
# ".tmp": temp names of caches written before ge2e.files took over their atomic writes
SHARD_FILE = re.compile(r"^shard-(\d{5})\.(npy|tsv)(\.tmp)?$")


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


# ---------------------------------------------------------------------------------------------- file I/O


def write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def read_index(out_dir: Path) -> dict[str, Any] | None:
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


def write_index(out_dir: Path, index: dict[str, Any]) -> None:
    atomic_write(out_dir / INDEX, lambda f: f.write(json.dumps(index, indent=1).encode()))


def shard_complete(out_dir: Path, name: str) -> bool:
    return (out_dir / f"{name}.tsv").is_file() and (out_dir / f"{name}.npy").is_file()


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
        index = read_index(self.root)
        if index is None:
            raise Ge2eError(f"{self.root}: not a ge2e feature cache (no {INDEX}; run `ge2e prepare` first)")
        self._audio = dict(index["audio_config"])
        self._shards: list[str] = [s["name"] for s in index["shards"]]
        self.utterances: list[CachedUtterance] = []
        for number, name in enumerate(self._shards):
            if not shard_complete(self.root, name):
                raise Ge2eError(f"{self.root}: shard {name} is incomplete; re-run `ge2e prepare` to finish it")
            for r in read_tsv(self.root / f"{name}.tsv"):
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

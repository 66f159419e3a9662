"""Corpus readers: a folder of audio files -> a manifest, a list of :class:`Utterance`.

Supported layouts (``layout=`` name, then the file names it expects under ``root``):

- ``librispeech``: ``[<subset>/]<spk>/<chapter>/<spk>-<chapter>-<n>.flac``; corpus ``LibriSpeech``.
- ``voxceleb``: ``<id>/<video>/<n>.wav|.m4a`` with ``<id>`` like ``id10001`` (VoxCeleb1 and 2); m4a needs ffmpeg.
- ``speech_commands``: ``<word>/<8 hex digits>_nohash_<n>.<ext>``; label = word; folders starting with ``_``
  (``_background_noise_``) are skipped.
- ``dspspeech``: ``<spk>/<spk>-<word>-<rep>.<ext>``; label = word; corpus ``DSPSpeech-20``.
- ``fsdd``: ``<digit>_<name>_<n>.wav`` (Free Spoken Digit Dataset); speaker = name, label = digit.
- ``speechocean762``: ``SPEAKER<id>/<utt>.<ext>`` (L2 English read speech, adults and children); corpus
  ``speechocean762``. ``speakers.tsv`` beside the speaker folders, when present, must list every speaker.
- ``wuw2``: ``<8 hex digits>/<session>-<utt>.<ext>`` (WUW Corpus II telephone calls, 8 kHz); corpus ``wuw2``.
  Utterances 001-005 are the five wake words said alone: label = the wake word (from ``sessions.tsv`` when it
  is there, else from the utterance number); free sentences 006-010 have no label.
- ``generic``: ``<speaker>/**/<utt>.<ext>``: the first folder under ``root`` is the speaker.

The corpus name is the ``corpus=`` argument, else the layout's fixed name above, else the name of ``root``
(so ``/data/speech_commands_v0.02_test`` gives the name used by the official split files).

Auto-detection (``layout="auto"``) lists the audio files once and picks the first layout, in the order
voxceleb, librispeech, speech_commands, dspspeech, fsdd, speechocean762, wuw2, generic, whose file-name pattern
matches EVERY audio file (after that layout's own skip rule): the specific layouts come first because ``generic``
accepts any file inside a sub-folder.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ge2e.decoding import AUDIO_EXTENSIONS, FFMPEG_EXTENSIONS, require_ffmpeg
from ge2e.errors import Ge2eError

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Utterance:
    """One audio file of a corpus. ``speaker`` is the corpus's own id; :attr:`key` is unique across corpora."""

    path: str
    speaker: str
    label: str = ""
    corpus: str = ""

    @property
    def key(self) -> str:
        """Globally unique speaker key ``"<corpus>/<speaker>"``."""
        return f"{self.corpus}/{self.speaker}"


# A parser maps a file's path parts relative to the root -> (speaker, label), or None when the name does not
# fit the layout.
Parser = Callable[[tuple[str, ...]], tuple[str, str] | None]

_LIBRI = re.compile(r"^(\d+)-(\d+)-(\d+)\.flac$")
_VOX_ID = re.compile(r"^id\d+$")
_SC = re.compile(r"^([0-9a-f]{8})_nohash_\d+\.\w+$")
_DSP = re.compile(r"^([^-]+)-([^-]+)-(\d+)\.\w+$")
_FSDD = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
_SO762_SPK = re.compile(r"^SPEAKER\d+$")
_WUW_SPK = re.compile(r"^[0-9a-f]{8}$")
_WUW_UTT = re.compile(r"^(\d+)-(\d{3})\.\w+$")
# WUW Corpus II prompts: utterances 001-005 are these wake words said alone (the corpus README).
WUW_KEYWORDS = {"001": "operator", "002": "thinkengine", "003": "onword", "004": "wildfire", "005": "voyager"}


def _parse_librispeech(parts: tuple[str, ...]) -> tuple[str, str] | None:
    m = _LIBRI.match(parts[-1])
    if m is None or len(parts) < 3 or parts[-3] != m[1] or parts[-2] != m[2]:
        return None
    return m[1], ""


def _parse_voxceleb(parts: tuple[str, ...]) -> tuple[str, str] | None:
    if len(parts) < 3 or not _VOX_ID.match(parts[-3]) or Path(parts[-1]).suffix not in (".wav", ".m4a"):
        return None
    return parts[-3], ""


def _parse_speech_commands(parts: tuple[str, ...]) -> tuple[str, str] | None:
    m = _SC.match(parts[-1])
    if m is None or len(parts) != 2:
        return None
    return m[1], parts[0]


def _parse_dspspeech(parts: tuple[str, ...]) -> tuple[str, str] | None:
    m = _DSP.match(parts[-1])
    if m is None or len(parts) != 2 or parts[0] != m[1]:
        return None
    return m[1], m[2]


def _parse_fsdd(parts: tuple[str, ...]) -> tuple[str, str] | None:
    m = _FSDD.match(parts[-1])
    return None if m is None else (m[2], m[1])


def _parse_speechocean762(parts: tuple[str, ...]) -> tuple[str, str] | None:
    if len(parts) != 2 or not _SO762_SPK.match(parts[0]) or Path(parts[1]).suffix.lower() not in AUDIO_EXTENSIONS:
        return None
    return parts[0], ""


def _parse_wuw2(parts: tuple[str, ...]) -> tuple[str, str] | None:
    m = _WUW_UTT.match(parts[-1])
    if m is None or len(parts) != 2 or not _WUW_SPK.match(parts[0]):
        return None
    return parts[0], WUW_KEYWORDS.get(m[2], "")


def _parse_generic(parts: tuple[str, ...]) -> tuple[str, str] | None:
    return (parts[0], "") if len(parts) >= 2 else None


def _skip_speech_commands(parts: tuple[str, ...]) -> bool:
    return parts[0].startswith("_")  # _background_noise_ holds long noise clips, no speaker


def _skip_nothing(parts: tuple[str, ...]) -> bool:
    return False


def read_tsv(path: Path) -> list[dict[str, str]]:
    """Rows of a tab-separated file with a header line (corpus metadata, feature-cache shard lists)."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _annotate_wuw2(root: Path, manifest: list[Utterance]) -> list[Utterance]:
    """Labels from ``sessions.tsv``: the wake word for utterances said alone; a speaker mismatch is an error."""
    table = root / "sessions.tsv"
    if not table.is_file():
        return manifest
    rows = {row["file"]: row for row in read_tsv(table)}
    out = []
    for u in manifest:
        row = rows.get(Path(u.path).relative_to(root).as_posix())
        if row is None:
            out.append(u)
            continue
        if row["speaker"] != u.speaker:
            raise Ge2eError(
                f"{table}: {row['file']} is listed for speaker {row['speaker']}, its folder says {u.speaker}"
            )
        label = row["keyword"].lower() if row["context"] == "alone" else ""
        out.append(replace(u, label=label))
    return out


def _annotate_speechocean762(root: Path, manifest: list[Utterance]) -> list[Utterance]:
    """Checks the speaker folders against ``speakers.tsv`` (age, gender and split live there)."""
    table = root / "speakers.tsv"
    if table.is_file():
        listed = {row["speaker"] for row in read_tsv(table)}
        unlisted = sorted({u.speaker for u in manifest} - listed)
        if unlisted:
            logger.warning("%s: %d speaker folder(s) not in speakers.tsv, e.g. %s", root, len(unlisted), unlisted[0])
    return manifest


def _annotate_nothing(root: Path, manifest: list[Utterance]) -> list[Utterance]:
    return manifest


@dataclass(frozen=True)
class Layout:
    """A corpus layout: how to name speakers and labels from a path, what to skip, the corpus's fixed name, and
    how its metadata files (if any) refine the manifest."""

    name: str
    parse: Parser
    skip: Callable[[tuple[str, ...]], bool] = _skip_nothing
    corpus: str = ""  # empty: the name of the root folder
    annotate: Callable[[Path, list[Utterance]], list[Utterance]] = _annotate_nothing


# Detection order: most specific first (see the module docstring).
LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("voxceleb", _parse_voxceleb),
        Layout("librispeech", _parse_librispeech, corpus="LibriSpeech"),
        Layout("speech_commands", _parse_speech_commands, _skip_speech_commands),
        Layout("dspspeech", _parse_dspspeech, corpus="DSPSpeech-20"),
        Layout("fsdd", _parse_fsdd, corpus="FSDD"),
        Layout("speechocean762", _parse_speechocean762, corpus="speechocean762", annotate=_annotate_speechocean762),
        Layout("wuw2", _parse_wuw2, corpus="wuw2", annotate=_annotate_wuw2),
        Layout("generic", _parse_generic),
    )
}


def list_audio(root: Path) -> list[tuple[str, ...]]:
    """Path parts (relative to ``root``) of every audio file under ``root``, sorted; hidden entries ignored.

    Folder links are followed (corpora are often assembled from links to speaker folders), each real folder once,
    so a link back up the tree is not walked around forever. Audio-named entries that are not regular files
    (FIFOs, dangling links, link loops) are listed too, so that the decoder reports them instead of their
    vanishing silently."""
    files = []
    seen = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(folder).relative_to(root).parts
        files.extend(
            (*rel, name) for name in names if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS
        )
    return sorted(files)


def detect_layout(files: list[tuple[str, ...]], root: Path | str = "<root>") -> Layout:
    """The first layout of :data:`LAYOUTS` whose pattern fits every (non-skipped) file; Ge2eError if none."""
    for layout in LAYOUTS.values():
        kept = [parts for parts in files if not layout.skip(parts)]
        if kept and all(layout.parse(parts) is not None for parts in kept):
            return layout
    raise Ge2eError(f"{root}: cannot detect the corpus layout; pass one of {', '.join(LAYOUTS)} explicitly")


def speaker_names(paths: Sequence[str | Path], level: int | None = None) -> list[str]:
    """The speaker of each file as its corpus layout names it (:func:`detect_layout` on the paths below the
    files' common folder, or a few folders above it, so that a single speaker's or chapter's files are named
    right too): LibriSpeech's ``<spk>/<chapter>/<utt>`` gives ``<spk>``. Files no specific layout explains are
    named after the first folder under the common one (``generic``), else after their parent folder.

    ``level`` overrides the layout: the name of the folder ``level`` steps above each file (1 = its parent).
    """
    absolute = [Path(os.path.abspath(p)) for p in paths]
    if level is not None:
        if level < 1:
            raise Ge2eError(f"--speaker-level must be >= 1 (1 = the file's parent folder), got {level}")
        if short := [p for p in absolute if len(p.parts) <= level]:
            raise Ge2eError(f"{short[0]}: has no folder {level} level(s) above it (--speaker-level {level})")
        return [p.parts[-1 - level] for p in absolute]
    if not absolute:
        return []
    common = Path(os.path.commonpath([p.parent for p in absolute]))
    specific = [layout for layout in LAYOUTS.values() if layout.name != "generic"]
    for root in [common, *list(common.parents)[:3]]:
        parts = [p.relative_to(root).parts for p in absolute]
        for layout in specific:
            named = [None if layout.skip(q) else layout.parse(q) for q in parts]
            if any(named) and all(n is not None or layout.skip(q) for n, q in zip(named, parts, strict=True)):
                return [n[0] if n else p.parent.name for n, p in zip(named, absolute, strict=True)]
    return [p.relative_to(common).parts[0] if p.parent != common else p.parent.name for p in absolute]


def name_speakers(utterances: Sequence[Utterance], level: int | None = None) -> list[Utterance]:
    """``utterances`` with each speaker named as :func:`speaker_names` names its file (``level`` as there), the
    one naming every command shows for folders: :func:`read_corpus` names them relative to the root it is given,
    so a single speaker's folder would give its chapters as speakers."""
    names = speaker_names([u.path for u in utterances], level)
    return [replace(u, speaker=name) for u, name in zip(utterances, names, strict=True)]


def read_corpus(root: str | Path, layout: str = "auto", corpus: str | None = None) -> list[Utterance]:
    """Manifest of the corpus under ``root``, sorted by path (layouts and detection: module docstring).

    With an explicit layout, files whose names do not fit it are skipped with a logged warning.

    Raises:
        Ge2eError: ``root`` is not a folder, holds no audio, the layout is unknown or cannot be detected, or
            it holds m4a files and ffmpeg is not installed.
    """
    root = Path(root)
    if not root.is_dir():
        raise Ge2eError(f"{root}: corpus folder not found")
    files = list_audio(root)
    if not files:
        raise Ge2eError(f"{root}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    if layout == "auto":
        chosen = detect_layout(files, root)
        logger.info("%s: detected layout %s", root, chosen.name)
    elif layout in LAYOUTS:
        chosen = LAYOUTS[layout]
    else:
        raise Ge2eError(f"unknown layout {layout!r}; choose from auto, {', '.join(LAYOUTS)}")
    name = corpus or chosen.corpus or root.resolve().name
    manifest, misfits = [], 0
    for parts in files:
        if chosen.skip(parts):
            continue
        parsed = chosen.parse(parts)
        if parsed is None:
            misfits += 1
            continue
        manifest.append(Utterance(str(root.joinpath(*parts)), parsed[0], parsed[1], name))
    if misfits:
        logger.warning("%s: skipped %d file(s) whose names do not fit the %s layout", root, misfits, chosen.name)
    manifest = chosen.annotate(root, manifest)
    if any(Path(u.path).suffix.lower() in FFMPEG_EXTENSIONS for u in manifest):
        require_ffmpeg()
    return manifest


def load_split(data_root: str | Path, corpus: str, split: str) -> set[str]:
    """Speaker ids of an official split: ``<data_root>/splits/<corpus>.<split>.txt``, one id per line.

    Raises:
        Ge2eError: unknown split name or missing split file.
    """
    if split not in SPLITS:
        raise Ge2eError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    return read_speaker_list(Path(data_root) / "splits" / f"{corpus}.{split}.txt")


def read_speaker_list(path: str | Path) -> set[str]:
    """Speaker ids (or ``corpus/speaker`` keys) listed one per line; blank lines and ``#`` comments ignored."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise Ge2eError(f"{path}: cannot read speaker list ({exc.strerror or exc})") from None
    return {s for line in lines if (s := line.split("#", 1)[0].strip())}

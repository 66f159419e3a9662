"""Typed errors. Every message is one line that names the file (or object) and the problem."""

from __future__ import annotations

from pathlib import Path


class Ge2eError(Exception):
    """Base class of every error ge2e raises on purpose; the CLI prints it as one line."""


class ConfigError(Ge2eError):
    """A configuration file or value is invalid."""


def printable(name: str | Path) -> str:
    """``name`` with control characters escaped (``a\\nb.wav``), so that it stays on its one line."""
    text = str(name)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class PathError(Ge2eError):
    """A problem with one file or folder: ``path``, and ``problem`` in a few words; printed ``path: problem``."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{printable(path)}: {problem}")


class CheckpointError(PathError):
    """A model file is missing, corrupt, or not a ge2e checkpoint."""


class AudioError(PathError):
    """Audio could not be turned into features. ``path`` names the file (or ``<array>``)."""


class AudioFileMissing(AudioError):
    """The file does not exist."""


class AudioDecodeError(AudioError):
    """The file exists but cannot be decoded (corrupt, unsupported format)."""


class EmptyAudio(AudioError):
    """The file decodes to zero samples."""


class NonFiniteAudio(AudioError):
    """The samples contain NaN or infinity."""


class NoSpeechError(AudioError):
    """Voice activity detection found no speech (silence or noise only)."""


class AudioTooShort(AudioError):
    """Less audio (or speech) than the minimum duration."""


class AudioTooLong(AudioError):
    """More audio than the decoder's duration limit (:class:`ge2e.decoding.Limits`)."""


class LowConfidenceSpeech(UserWarning):
    """The VAD found too little speech in audible audio, so the front end scored an energy-trimmed (or whole) clip.

    A warning, not an error: a short clip a person hears clearly must still get a score, flagged as less reliable.
    """


class OutputError(PathError):
    """An output file or folder cannot be written (read-only, permissions, disk full)."""

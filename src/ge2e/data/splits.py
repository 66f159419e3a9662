"""Corpus splits: which speakers an official split (``<corpus>.<split>``) or a speaker-list file names.

Training sources, evaluation and the recipes all select speakers through :func:`resolve_speakers`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ge2e.data.readers import load_split, read_speaker_list
from ge2e.errors import ConfigError

# The official test trial lists of the shared corpora (``$GE2E_DATA/trials/<name>.txt``): every reported figure of
# the bundled model and of the baselines it is compared with comes from these.
TEST_LISTS = (
    "LibriSpeech.test",
    "DSPSpeech-20.test",
    "speechocean762.test",
    "wuw2.test",
    "speech_commands_v0.02_test.test",
)
# The official dev trial lists of the training corpora (LibriSpeech has no dev speakers): thresholds, checkpoints
# and recipe choices are made on these, never on the test lists.
DEV_LISTS = ("DSPSpeech-20.dev", "speech_commands_v0.02_test.dev", "speechocean762.dev", "wuw2.dev")


def data_root() -> Path:
    """The shared corpora folder: ``$GE2E_DATA`` or ``../shared/data``."""
    return Path(os.environ.get("GE2E_DATA", "../shared/data"))


def resolve_speakers(splits: list[str]) -> set[str] | None:
    """Speaker keys ``"<corpus>/<speaker>"`` of the named official splits or speaker-list files."""
    if not splits:
        return None
    keys: set[str] = set()
    for item in splits:
        if Path(item).suffix == ".txt" and Path(item).exists():
            keys |= read_speaker_list(item)
            continue
        corpus, _, split = item.rpartition(".")
        if not corpus:
            raise ConfigError(f"split {item!r}: expected '<corpus>.<split>' or a speaker-list .txt file")
        keys |= {f"{corpus}/{spk}" for spk in load_split(data_root(), corpus, split)}
    return keys

"""The ```python examples of README.md and docs/usage.md run unchanged with the bundled model on real speech.

Each block runs in a folder where every audio file it names (``alice_1.wav``, ``talk.wav``, ...) is a LibriSpeech
test-other utterance written under that name, and where the names a block takes as given (``paths``, ``wav1``,
``bob_embedding``, ``emb.npz``) are defined beforehand: the setup, not the examples, is what is substituted.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "docs/usage.md")
AUDIO_NAME = re.compile(r"[\"']([\w.-]+\.(?:wav|flac))[\"']")


def python_blocks(page: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / page).read_text(), flags=re.MULTILINE | re.DOTALL)


EXAMPLES = [(page, k, block) for page in PAGES for k, block in enumerate(python_blocks(page))]


def test_the_pages_have_examples() -> None:
    assert {page for page, _, _ in EXAMPLES} == set(PAGES)


@pytest.mark.parametrize(("page", "index", "block"), EXAMPLES, ids=[f"{p}[{k}]" for p, k, _ in EXAMPLES])
def test_example_runs(
    page: str, index: int, block: str, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ge2e

    clips = sorted((data_root / "LibriSpeech" / "test-other").rglob("*.flac"))[:6]
    monkeypatch.chdir(tmp_path)
    waves = [sf.read(clip, dtype="float32")[0] for clip in clips]
    for k, name in enumerate(sorted(set(AUDIO_NAME.findall(block)))):
        sf.write(name, waves[k % len(waves)], 16_000)
    np.savez("emb.npz", paths=np.array([str(c) for c in clips]), embeddings=np.eye(len(clips), dtype=np.float32))
    given = {
        "paths": [str(c) for c in clips[:3]],
        "wav1": waves[0],
        "wav2": waves[1],
        "wav3": waves[2],
        "bob_embedding": ge2e.embed_speaker(clips[3:5]),
    }
    exec(compile(block, f"{page}[{index}]", "exec"), given)

"""recipes/diarization/make_eval_set.py: which speakers a conversation of the evaluation sets may draw."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ge2e.diarization.simulate import ConversationConfig, Source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "diarization"))
from make_eval_set import MIN_SPEECH_S, build  # a recipe script, not a package module

SR = 16_000


def source(speaker: str, speech_s: int) -> Source:
    """``speech_s`` one-second regions of noise, one second apart."""
    wav = np.random.default_rng(len(speaker)).standard_normal(2 * speech_s * SR).astype(np.float32) * 0.1
    return Source(speaker, speaker, wav, [(2 * a * SR, (2 * a + 1) * SR) for a in range(speech_s)])


def test_monologues_come_from_speakers_with_speech_for_twice_the_turns(tmp_path: Path) -> None:
    short = [source(f"short{i}", int(MIN_SPEECH_S) + 2) for i in range(4)]  # enough for a turn, not a monologue
    long = source("long", int(2 * MIN_SPEECH_S))
    cfg = ConversationConfig(turns_per_speaker=2, turn_s=(1.0, 2.0))
    manifest = build(tmp_path, "dev", [1, 2], 6, cfg, 0, [*short, long])
    written = json.loads((tmp_path / "manifest.json").read_text())
    assert [c["speakers"] for c in written["conversations"]] == [c["speakers"] for c in manifest["conversations"]]
    by_count = {k: [c for c in manifest["conversations"] if len(c["speakers"]) == k] for k in (1, 2)}
    assert [c["uri"] for c in by_count[1]] == [f"k1_{i:02d}" for i in range(6)]
    assert all(c["speakers"] == ["long"] for c in by_count[1])
    assert all(len(c["turns"]) == 4 for c in by_count[1])  # as many turns as a two-speaker conversation
    # two-speaker conversations draw from every speaker
    assert any(s.startswith("short") for c in by_count[2] for s in c["speakers"])
    assert len(list((tmp_path / "wav").glob("*.wav"))) == len(list((tmp_path / "ref").glob("*.rttm"))) == 12


def test_another_snr_gives_the_same_conversations_with_other_noise(tmp_path: Path) -> None:
    # the noise-free twin of a set (--snr-db 100 100) must be the same conversations, or comparing the two
    # measures other conversations as well as the noise
    import soundfile as sf

    sources = [source(f"s{i}", int(MIN_SPEECH_S) + 4) for i in range(4)]
    sets = {}
    for snr in ((10.0, 25.0), (100.0, 100.0)):
        cfg = ConversationConfig(turns_per_speaker=2, turn_s=(1.0, 2.0), overlap_prob=0.5, snr_db=snr)
        sets[snr] = (build(tmp_path / str(snr[0]), "dev", [2, 3], 2, cfg, 0, sources), tmp_path / str(snr[0]))
    (noisy, noisy_dir), (quiet, quiet_dir) = sets.values()
    assert noisy["conversations"] == quiet["conversations"]  # speakers, turns, timings
    for c in noisy["conversations"]:
        loud, _ = sf.read(noisy_dir / "wav" / f"{c['uri']}.wav")
        clean, _ = sf.read(quiet_dir / "wav" / f"{c['uri']}.wav")
        assert len(loud) == len(clean)
        residual = loud - clean  # the noise at 10-25 dB, next to nothing at 100 dB
        assert 10 * np.log10(np.mean(clean**2) / np.mean(residual**2)) < 30
        assert (noisy_dir / "ref" / f"{c['uri']}.rttm").read_text() == (
            quiet_dir / "ref" / f"{c['uri']}.rttm"
        ).read_text()

"""ffmpeg decoding of m4a (VoxCeleb2): a real round trip through the system ffmpeg that `make sysdeps` installs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ge2e.decoding import load_audio
from ge2e.errors import AudioDecodeError

SR = 16_000


def test_m4a_round_trip(tmp_path: Path, ffmpeg: str) -> None:
    t = np.arange(2 * 44_100) / 44_100
    wav, m4a = tmp_path / "tone.wav", tmp_path / "tone.m4a"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 500 * t)).astype(np.float32), 44_100)
    subprocess.run([ffmpeg, "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    out = load_audio(m4a, target_sr=SR)
    assert out.dtype == np.float32 and out.ndim == 1
    # AAC adds encoder delay and padding: length within 0.1 s, then level and pitch
    assert abs(len(out) - round(len(t) * SR / 44_100)) < 0.1 * SR
    middle = out[SR // 4 : SR]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
    assert np.argmax(np.abs(np.fft.rfft(middle[: SR // 2]))) == 250  # 500 Hz in 2 Hz bins


def test_corrupt_m4a_is_a_decode_error(tmp_path: Path, ffmpeg: str) -> None:
    bad = tmp_path / "bad.m4a"
    bad.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(200))
    with pytest.raises(AudioDecodeError, match=r"bad\.m4a"):
        load_audio(bad, target_sr=SR)

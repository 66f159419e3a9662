"""The one door for audio (ge2e.decoding): bounded memory on huge files, and the CLI and the service giving the same
verdict on the same edge-case files (docs/usage.md, What audio is accepted)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr

from ge2e.cli import main
from ge2e.decoding import DEFAULT_MAX_SECONDS, Limits, load_audio
from ge2e.errors import AudioDecodeError, AudioError

KEY = "decoding-test-key-0123456789abcdef"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# what a command decoding a 5-hour file a block at a time, refused from its header, may take: the interpreter, torch,
# the model and two short files need about 0.5 GB; the file's samples alone would be 1.15 GB of float32
MEMORY_CAP_BYTES = 1 << 30


def silent_flac(path: Path, seconds: float, sr: int) -> Path:
    """A FLAC of digital silence, written a minute at a time (zeros compress to almost nothing)."""
    block = np.zeros(60 * sr, dtype=np.int16)
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16", format="FLAC") as f:
        left = round(seconds * sr)
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
    return path


@pytest.fixture(scope="module")
def speech(data_root: Path) -> tuple[np.ndarray, int]:
    path = sorted((data_root / "LibriSpeech" / "test-other").rglob("*.flac"))[0]
    wav, sr = sf.read(path, dtype="float32")
    return wav, sr


def test_a_five_hour_file_is_skipped_in_bounded_memory(tmp_path: Path, data_root: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for clip in sorted((data_root / "LibriSpeech" / "test-other").rglob("*.flac"))[:2]:
        shutil.copy(clip, folder / clip.name)
    long = silent_flac(folder / "five_hours.flac", 5 * 3600, 16_000)
    assert long.stat().st_size < 5_000_000
    # peak RSS of the command alone: a fresh parent whose only child is the command
    probe = (
        "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(p.returncode); "
        "print(p.stdout + p.stderr, end='')"
    )
    cmd = [sys.executable, "-c", probe, sys.executable, "-m", "ge2e", "embed", folder, "--out", tmp_path / "e.npz"]
    out = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=600, env=ENV).stdout
    peak_kib, status, *lines = out.splitlines()
    print(f"peak RSS {int(peak_kib) / 1024:.0f} MiB")
    assert status == "0", out
    assert int(peak_kib) * 1024 < MEMORY_CAP_BYTES
    assert [line for line in lines if "five_hours" in line] == [
        f"  {long}: 18000 s of audio, longer than the {DEFAULT_MAX_SECONDS:g} s limit"
    ], out
    assert len(np.load(tmp_path / "e.npz")["paths"]) == 2


def test_the_service_policy_refuses_ffmpeg_formats(tmp_path: Path) -> None:
    m4a_head = b"\x00\x00\x00\x18ftypM4A " + bytes(200)
    with pytest.raises(AudioDecodeError, match=r"formats that need ffmpeg .* are refused here"):
        load_audio(m4a_head, limits=Limits(allow_ffmpeg=False))
    (tmp_path / "a.m4a").write_bytes(m4a_head)
    with pytest.raises(AudioDecodeError, match="formats that need ffmpeg"):
        load_audio(tmp_path / "a.m4a", limits=Limits(allow_ffmpeg=False))


def _wav_bytes(wav: np.ndarray, sr: int, subtype: str | None = None) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, wav, sr, format="WAV", subtype=subtype)
    return buffer.getvalue()


def edge_cases(folder: Path, speech: tuple[np.ndarray, int]) -> dict[str, str | None]:
    """Write the edge-case files into ``folder``: file name -> the problem both must give (None: accepted)."""
    wav, sr = speech
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal((sr, 33))).astype(np.float32)
    sf.write(folder / "ch33.wav", noise, sr)
    sf.write(folder / "rate384001.wav", wav[:sr], 384_001)
    silent_flac(folder / "too_long.flac", DEFAULT_MAX_SECONDS + 1, 8_000)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + rng.bytes(400))
    sf.write(folder / "nan.wav", np.full(sr, np.nan, dtype=np.float32), sr, subtype="FLOAT")
    sf.write(folder / "silent.wav", np.zeros(2 * sr, dtype=np.float32), sr)
    sf.write(folder / "narrow8k.wav", soxr.resample(wav, sr, 8_000), 8_000)
    sf.write(folder / "stereo.wav", np.stack([wav, 0.5 * wav], axis=1), sr)
    cases: dict[str, str | None] = {
        "ch33.wav": "unsupported format: 33 channels (at most 32)",
        "rate384001.wav": "unsupported sample rate 384001 Hz",
        "too_long.flac": f"3601 s of audio, longer than the {DEFAULT_MAX_SECONDS:g} s limit",
        "empty.wav": "empty file (0 bytes)",
        "corrupt.wav": "cannot decode audio",
        "nan.wav": f"{sr} NaN or infinite samples",
        "silent.wav": "silent audio",
        "narrow8k.wav": None,
        "stereo.wav": None,
    }
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:  # the CLI decodes it with ffmpeg; the service refuses ffmpeg formats by policy (docs/serve.md)
        sf.write(folder / "speech.wav", wav, sr)
        cmd = [ffmpeg, "-v", "error", "-i", folder / "speech.wav", "-c:a", "aac", folder / "speech.m4a"]
        subprocess.run(list(map(str, cmd)), check=True)
        (folder / "speech.wav").unlink()
        cases["speech.m4a"] = None
    return cases


def serve_verdicts(folder: Path, names: list[str], tmp_path: Path) -> dict[str, tuple[int, str]]:
    """name -> (HTTP status, error message or '') of POST /v1/embed with that file, the CLI's duration cap."""
    from ge2e.pretrained import load_model
    from ge2e.serve import ServeConfig, SpeakerStore, create_app

    model = load_model()
    store = SpeakerStore(tmp_path / "db.sqlite", "m", model.embedding_size)
    app = create_app(model, store, [KEY], ServeConfig(threshold=0.5, max_audio_seconds=DEFAULT_MAX_SECONDS), "m")

    async def post_all() -> dict[str, tuple[int, str]]:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {KEY}"}
        out = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers, timeout=120) as c:
            for name in names:
                r = await c.post("/v1/embed", files={"audio": (name, (folder / name).read_bytes())})
                out[name] = (r.status_code, r.json()["error"]["message"] if r.status_code != 200 else "")
        return out

    return asyncio.run(post_all())


def test_the_cli_and_the_service_give_the_same_verdicts(
    tmp_path: Path, speech: tuple[np.ndarray, int], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "edge"
    folder.mkdir()
    cases = edge_cases(folder, speech)
    assert main(["embed", str(folder), "--out", str(tmp_path / "e.npz"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    embedded = {Path(p).name for p in np.load(tmp_path / "e.npz")["paths"]}
    served = serve_verdicts(folder, sorted(cases), tmp_path)
    for name, problem in cases.items():
        status, message = served[name]
        if problem is None:
            assert name in embedded, printed
            if name.endswith(".m4a"):  # the service's documented policy: no ffmpeg on a client's bytes
                assert status == 415 and "formats that need ffmpeg (m4a, aac, ...) are refused here" in message
            else:
                assert status == 200, message
            continue
        assert name not in embedded
        assert f"  {folder / name}: {problem}" in printed, printed
        assert status in (413, 415, 422) and message.startswith(f"audio ({name}): {problem}"), (name, message)


def test_limits_are_checked(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="channels"):
        load_audio(np.zeros((100, 3), dtype=np.float32), sr=16_000, limits=Limits(max_channels=2))
    with pytest.raises(AudioError, match="sample rate 48000 Hz"):
        load_audio(np.zeros(100, dtype=np.float32), sr=48_000, limits=Limits(max_sample_rate=44_100))
    with pytest.raises(Exception, match="must be > 0"):
        Limits(max_seconds=0)


def test_max_seconds_sets_the_cli_cap(
    tmp_path: Path, speech: tuple[np.ndarray, int], capsys: pytest.CaptureFixture[str]
) -> None:
    wav, sr = speech
    clip = tmp_path / "clip.wav"
    sf.write(clip, wav[: 3 * sr], sr)
    out = str(tmp_path / "e.npz")
    assert main(["embed", str(clip), "--out", out, "--no-progress", "--max-seconds", "2"]) == 1  # none embedded
    assert f"  {clip}: 3 s of audio, longer than the 2 s limit" in capsys.readouterr().out
    assert main(["embed", str(clip), "--out", out, "--no-progress", "--max-seconds", "4"]) == 0

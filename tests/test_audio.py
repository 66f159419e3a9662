"""Audio front end: decoding, errors, volume, VAD and log-mel features."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ge2e.audio import (
    _hz_to_mel,
    _mel_to_hz,
    load_audio,
    log_mel,
    mel_frequencies,
    normalize_volume,
    preprocess,
    speech_mask,
    trim_silence,
)
from ge2e.config import AudioConfig
from ge2e.errors import (
    AudioDecodeError,
    AudioError,
    AudioFileMissing,
    AudioTooShort,
    EmptyAudio,
    NonFiniteAudio,
    NoSpeechError,
)

SR = 16_000


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def rms_dbfs(wav: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))


def assert_names(exc: pytest.ExceptionInfo[AudioError], name: str) -> None:
    """The message is one line that names the input."""
    message = str(exc.value)
    assert name in message
    assert "\n" not in message and "\r" not in message
    assert exc.value.path == name


# ------------------------------------------------------------------------------------------------ errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioFileMissing) as exc:
        load_audio(path)
    assert_names(exc, str(path))


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioDecodeError) as exc:
        load_audio(path)
    assert_names(exc, str(path))


def test_truncated_flac(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    sf.write(path, tone(440, 1.0), SR)
    path.write_bytes(path.read_bytes()[:30])  # header cut short
    with pytest.raises(AudioDecodeError) as exc:
        load_audio(path)
    assert_names(exc, str(path))


def test_empty_wav(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(EmptyAudio) as exc:
        load_audio(path)
    assert_names(exc, str(path))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_array(bad: float) -> None:
    wav = tone(440, 0.5)
    wav[100] = bad
    with pytest.raises(NonFiniteAudio) as exc:
        load_audio(wav, sr=SR)
    assert_names(exc, "<array>")


def test_non_finite_file(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    wav = tone(440, 0.5)
    wav[10] = np.nan
    sf.write(path, wav, SR, subtype="FLOAT")
    with pytest.raises(NonFiniteAudio) as exc:
        load_audio(path)
    assert_names(exc, str(path))


@pytest.mark.parametrize("sr", [None, 0, -16000, 1000])
def test_bad_sample_rate(sr: int | None) -> None:
    with pytest.raises(AudioError) as exc:
        load_audio(tone(440, 0.5), sr=sr)
    assert_names(exc, "<array>")


def test_silent_audio(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SR, dtype=np.int16), SR)
    with pytest.raises(NoSpeechError, match="silent") as exc:
        preprocess(path)
    assert_names(exc, str(path))


def test_near_silent_dither_is_silent() -> None:
    dither = np.random.default_rng(0).integers(-1, 2, SR).astype(np.int16)  # +-1 LSB
    with pytest.raises(NoSpeechError, match="silent"):
        preprocess(dither, sr=SR, name="dither")


def test_noise_only_has_no_speech() -> None:
    noise = (0.01 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    with pytest.raises(NoSpeechError, match="VAD") as exc:
        preprocess(noise, sr=SR, name="noise.wav")
    assert_names(exc, "noise.wav")


def test_too_short(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, tone(440, 0.1), SR)
    cfg = AudioConfig(vad=False, min_speech_ms=250)
    with pytest.raises(AudioTooShort) as exc:
        preprocess(path, cfg=cfg)
    assert_names(exc, str(path))
    assert preprocess(path, cfg=AudioConfig(vad=False, min_speech_ms=50)).shape == (8, 40)


def test_preprocess_names_array_errors() -> None:
    with pytest.raises(EmptyAudio) as exc:
        preprocess(np.zeros(0, dtype=np.float32), sr=SR, name="utt-7")
    assert_names(exc, "utt-7")


# --------------------------------------------------------------------------------------------- decoding


def test_stereo_48k_file_to_mono_16k(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    left, right = tone(1000, 1.5, sr=48_000, amp=0.5), tone(1000, 1.5, sr=48_000, amp=0.1)
    sf.write(path, np.stack([left, right], axis=1), 48_000, subtype="PCM_16")
    wav = load_audio(path, target_sr=SR)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert len(wav) == round(1.5 * SR)
    # the channel mean is a 0.3-amplitude tone: RMS 0.3 / sqrt(2)
    assert np.sqrt(np.mean(wav[1000:-1000] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.01)


def test_int16_array() -> None:
    ints = (tone(440, 0.5) * 32768).astype(np.int16)
    wav = load_audio(ints, sr=SR)
    assert wav.dtype == np.float32
    np.testing.assert_allclose(wav, ints / 32768.0, atol=1e-7)
    assert load_audio(np.array([-32768, 16384, 0], dtype=np.int16), sr=SR).tolist() == [-1.0, 0.5, 0.0]


def test_uint8_array_is_offset_binary() -> None:
    wav = load_audio(np.array([0, 128, 255], dtype=np.uint8), sr=SR)
    np.testing.assert_allclose(wav, [-1.0, 0.0, 1.0], atol=0.01)


def test_stereo_array_layouts_agree() -> None:
    stereo = np.stack([tone(300, 0.5), tone(500, 0.5)])  # (C, L)
    mono = (stereo[0] + stereo[1]) / 2
    np.testing.assert_allclose(load_audio(stereo, sr=SR), mono, atol=1e-7)
    np.testing.assert_allclose(load_audio(stereo.T, sr=SR), mono, atol=1e-7)
    with pytest.raises(AudioError, match="shape"):
        load_audio(np.zeros((2, 3, 4), dtype=np.float32), sr=SR)


def test_resample_array() -> None:
    wav = load_audio(tone(1000, 1.0, sr=8_000), sr=8_000, target_sr=SR)
    assert len(wav) == SR
    spectrum = np.abs(np.fft.rfft(wav))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins over 1 s


@pytest.mark.parametrize(
    ("ext", "fmt", "subtype"),
    [
        ("flac", "FLAC", "PCM_16"),
        ("ogg", "OGG", "VORBIS"),
        ("opus", "OGG", "OPUS"),
        ("mp3", "MP3", "MPEG_LAYER_III"),
    ],
)
def test_compressed_round_trip(tmp_path: Path, ext: str, fmt: str, subtype: str) -> None:
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")
    path = tmp_path / f"tone.{ext}"
    original = tone(440, 1.0, amp=0.3)
    sf.write(path, original, SR, format=fmt, subtype=subtype)
    wav = load_audio(path)
    assert wav.dtype == np.float32
    # lossy codecs add encoder delay and padding: compare length, level and pitch, not samples
    assert abs(len(wav) - len(original)) < 0.1 * SR
    if subtype == "PCM_16":
        assert len(wav) == len(original)
        np.testing.assert_allclose(wav, original, atol=1e-4)  # 16-bit quantisation
    else:
        assert abs(rms_dbfs(wav[2000:-2000]) - rms_dbfs(original[2000:-2000])) < 1.0
        assert np.argmax(np.abs(np.fft.rfft(wav[: SR // 2]))) == 220  # 440 Hz in 2 Hz bins


# ----------------------------------------------------------------------------------------------- volume


def test_normalize_loudness() -> None:
    wav = tone(440, 1.0, amp=0.01)
    out = normalize_volume(wav, "loudness", -30.0)
    assert rms_dbfs(out) == pytest.approx(-30.0, abs=0.01)
    assert out.dtype == np.float32


def test_normalize_loudness_never_clips() -> None:
    clicks = np.zeros(SR, dtype=np.float32)
    clicks[::4000] = 0.5  # tiny RMS, high peak: the RMS target would need a gain of ~30
    out = normalize_volume(clicks, "loudness", -10.0)
    assert np.max(np.abs(out)) == pytest.approx(1.0)


def test_normalize_peak_and_none() -> None:
    wav = tone(440, 1.0, amp=0.2)
    assert np.max(np.abs(normalize_volume(wav, "peak", -6.0))) == pytest.approx(10 ** (-6 / 20), rel=1e-5)
    assert np.array_equal(normalize_volume(wav, "none"), wav)
    assert np.array_equal(normalize_volume(np.zeros(10, np.float32), "loudness"), np.zeros(10))
    with pytest.raises(ValueError, match="normalization"):
        normalize_volume(wav, "rms")


# ---------------------------------------------------------------------------------------------- log-mel


@pytest.mark.parametrize("length", [400, 401, 559, 560, 16_000, 16_123])
def test_log_mel_shape(length: int) -> None:
    cfg = AudioConfig()
    feats = log_mel(torch.zeros(length), cfg)
    assert feats.shape == (1 + (length - cfg.win_length) // cfg.hop_length, cfg.n_mels)
    assert feats.dtype == torch.float32
    assert torch.allclose(feats, torch.full_like(feats, np.log(1e-6)))  # silence -> the log floor


def test_log_mel_too_short() -> None:
    with pytest.raises(ValueError, match="400 samples"):
        log_mel(torch.zeros(399))


def htk_mel(hz: np.ndarray | float) -> np.ndarray:
    """The HTK mel scale, written here from the HTK Book (Mel(f) = 2595 log10(1 + f / 700)), not imported."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def htk_edges(n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    mels = np.linspace(htk_mel(f_min), htk_mel(f_max), n_mels + 2)
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def test_mel_scale_is_computed_in_float64_for_float32_input() -> None:
    hz = np.array([20.0, 1000.0, 7600.0], dtype=np.float32)
    np.testing.assert_allclose(_hz_to_mel(hz), htk_mel(hz.astype(np.float64)), rtol=1e-13)
    mel = np.array([31.7, 1000.0, 2783.0], dtype=np.float32)
    np.testing.assert_allclose(_mel_to_hz(mel), 700.0 * (10.0 ** (mel.astype(np.float64) / 2595.0) - 1.0), rtol=1e-13)


def test_mel_frequencies_at_published_mel_values() -> None:
    """Edges equally spaced in mel from 0 to 8000 Hz (2840.0 mel) pass 1000 mel at 1000 Hz, 2146.1 at 4000 Hz."""
    edges = mel_frequencies(998, 0.0, 8000.0)
    mels = np.linspace(0.0, 2840.0, len(edges))  # the published mel of 8000 Hz closes the range
    assert np.interp(1000.0, mels, edges) == pytest.approx(1000.0, abs=1.0)
    assert np.interp(2146.1, mels, edges) == pytest.approx(4000.0, abs=1.0)


@pytest.mark.parametrize(("n_mels", "f_min", "f_max"), [(40, 20.0, 7600.0), (80, 0.0, 8000.0), (3, 300.0, 3400.0)])
def test_mel_frequencies_are_htk_band_edges(n_mels: int, f_min: float, f_max: float) -> None:
    np.testing.assert_allclose(mel_frequencies(n_mels, f_min, f_max), htk_edges(n_mels, f_min, f_max), rtol=1e-9)


def reference_log_mel(wav: np.ndarray, cfg: AudioConfig, window: np.ndarray | None = None) -> np.ndarray:
    """log-mel written from the definitions: frames of win_length samples every hop_length, times a periodic
    Hann window (or ``window``), |rfft(n_fft)|^2, HTK triangles of peak 1, log(. + 1e-6). float64 throughout."""
    win, hop = cfg.win_length, cfg.hop_length
    count = 1 + (len(wav) - win) // hop
    frames = np.stack([wav[t * hop : t * hop + win] for t in range(count)]).astype(np.float64)
    if window is None:
        window = torch.hann_window(win, periodic=True, dtype=torch.float64).numpy()
    frames *= window
    power = np.abs(np.fft.rfft(frames, n=cfg.n_fft)) ** 2
    bins = np.linspace(0.0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    edges = htk_edges(cfg.n_mels, cfg.f_min, cfg.f_max)
    fbank = np.stack([np.interp(bins, edges[i : i + 3], [0.0, 1.0, 0.0]) for i in range(cfg.n_mels)])
    return np.log(power @ fbank.T + 1e-6)


@pytest.mark.parametrize("cfg", [AudioConfig(), AudioConfig(n_mels=24, n_fft=1024, f_min=100.0, window_ms=30.0)])
def test_log_mel_matches_definition(cfg: AudioConfig) -> None:
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(8_123) + tone(440, 8_123 / SR, amp=0.3)).astype(np.float32)
    got = log_mel(torch.from_numpy(wav), cfg).numpy()
    np.testing.assert_allclose(got, reference_log_mel(wav, cfg), atol=2e-3)


def test_window_is_hann() -> None:
    """A pure tone between two FFT bins: a Hann window's side lobes fall off fast, a rectangular window's do not,
    so the bands far from the tone tell the windows apart."""
    cfg = AudioConfig()
    wav = tone(1031.25, 0.5)  # halfway between bins 33 and 34 of the 512-point FFT at 16 kHz
    feats = log_mel(torch.from_numpy(wav), cfg).numpy().mean(0)
    np.testing.assert_allclose(feats, reference_log_mel(wav, cfg).mean(0), atol=2e-3)
    rectangular = reference_log_mel(wav, cfg, np.ones(cfg.win_length)).mean(0)
    assert np.abs(feats - rectangular).max() > 1.0  # the check above can tell the two windows apart


@pytest.mark.parametrize("freq", [150.0, 1000.0, 3000.0, 7000.0])
def test_log_mel_tone_in_right_band(freq: float) -> None:
    cfg = AudioConfig()
    centers = htk_edges(cfg.n_mels, cfg.f_min, cfg.f_max)[1:-1]
    feats = log_mel(torch.from_numpy(tone(freq, 0.5)), cfg)
    assert int(feats.mean(0).argmax()) == int(np.argmin(np.abs(centers - freq)))


def test_log_mel_tracks_gain() -> None:
    wav = torch.from_numpy(tone(1000, 0.5, amp=0.1))
    loud, quiet = log_mel(wav), log_mel(wav / 10)
    band = int(loud.mean(0).argmax())
    # power spectrum: -20 dB in amplitude is log(100) in log power
    assert float((loud - quiet)[:, band].mean()) == pytest.approx(np.log(100), abs=0.01)


def test_log_mel_batch_equals_items() -> None:
    rng = np.random.default_rng(0)
    batch = torch.from_numpy(rng.standard_normal((3, 8000)).astype(np.float32) * 0.1)
    stacked = log_mel(batch)
    assert stacked.shape == (3, 1 + (8000 - 400) // 160, 40)
    for i in range(3):
        torch.testing.assert_close(stacked[i], log_mel(batch[i]), atol=1e-4, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_log_mel_cuda_matches_cpu() -> None:
    wav = torch.from_numpy(tone(700, 0.5))
    torch.testing.assert_close(log_mel(wav.cuda()).cpu(), log_mel(wav), atol=1e-3, rtol=1e-4)


# -------------------------------------------------------------------------------------------------- VAD


PAD_MS = 60.0


def _pad_and_trim(speech: np.ndarray, sr: int) -> tuple[np.ndarray, int, int]:
    """Put 1 s of faint noise before and after speech -> (trimmed, first, last kept sample of the padded clip).

    Checks the parts common to every clip: both padding seconds are cut (up to the pad margin) and trim_silence
    returns exactly the speech_mask samples.
    """
    lead = (1e-4 * np.random.default_rng(0).standard_normal(sr)).astype(np.float32)
    wav = np.concatenate([lead, speech, lead])
    mask = speech_mask(wav, sr, threshold=0.5, pad_ms=PAD_MS)
    first, last = int(np.argmax(mask)), len(mask) - int(np.argmax(mask[::-1]))
    pad = PAD_MS * sr / 1000
    assert sr - pad <= first and last <= sr + len(speech) + pad
    trimmed = trim_silence(wav, sr, 0.5, PAD_MS, "speech")
    np.testing.assert_array_equal(trimmed, wav[mask])
    return trimmed, first, last


def _check_onsets(speech: np.ndarray, sr: int) -> None:
    """For clean speech (a clear onset and offset), VAD finds both within 0.2 s and keeps the words."""
    trimmed, first, last = _pad_and_trim(speech, sr)
    voiced = np.flatnonzero(np.abs(speech) > 0.05 * np.abs(speech).max())
    onset, offset = sr + voiced[0], sr + voiced[-1]
    assert onset - 0.2 * sr < first <= onset
    assert offset <= last < offset + 0.2 * sr
    assert len(trimmed) > 0.6 * (voiced[-1] - voiced[0])


@pytest.fixture(scope="module")
def espeak_speech(tmp_path_factory: pytest.TempPathFactory, espeak_ng: str) -> np.ndarray:
    path = tmp_path_factory.mktemp("tts") / "speech.wav"
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    subprocess.run([espeak_ng, "-w", str(path), text], check=True, capture_output=True)
    return normalize_volume(load_audio(path, target_sr=SR), "loudness", -25.0)


def test_vad_trims_synthetic_speech(espeak_speech: np.ndarray) -> None:
    _check_onsets(espeak_speech, SR)


def test_vad_at_other_sample_rate(espeak_speech: np.ndarray) -> None:
    _check_onsets(load_audio(espeak_speech, sr=SR, target_sr=22_050), 22_050)


def test_preprocess_synthetic_speech(espeak_speech: np.ndarray) -> None:
    feats = preprocess(espeak_speech, sr=SR)
    assert feats.dtype == np.float32 and feats.shape[1] == 40
    assert 100 < feats.shape[0] <= 1 + (len(espeak_speech) - 400) // 160
    np.testing.assert_allclose(feats.mean(0), 0.0, atol=1e-4)  # mean normalisation
    assert np.isfinite(feats).all()


def test_vad_trims_librispeech(data_root: Path) -> None:
    path = next(iter(sorted((data_root / "LibriSpeech" / "test-other").rglob("*.flac"))), None)
    assert path is not None, f"no LibriSpeech test-other FLAC under {data_root}"
    speech = load_audio(path)[: 6 * SR]  # 6 s keep the test fast
    trimmed, _, _ = _pad_and_trim(speech, SR)
    # read speech: pauses (and, in this clip, a ticking noise) go, but the speech, most of the energy, stays
    assert 0.5 * len(speech) < len(trimmed) < len(speech)
    assert np.sum(trimmed.astype(np.float64) ** 2) > 0.9 * np.sum(speech.astype(np.float64) ** 2)
    assert preprocess(path).shape[1] == 40


def syllables(seconds: float, rate_hz: float = 4.0) -> np.ndarray:
    """A voiced-speech stand-in: a 150 Hz buzz with harmonics whose level rises and falls like syllables."""
    t = np.arange(round(seconds * SR)) / SR
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * rate_hz * t), 0, None) ** 2
    return (0.3 * buzz * envelope / np.abs(buzz).max()).astype(np.float32)


@pytest.fixture
def deaf_vad(monkeypatch: pytest.MonkeyPatch) -> None:
    """A VAD that hears nothing: what silero does on some clearly spoken short or narrowband clips."""
    monkeypatch.setattr("ge2e.audio.speech_mask", lambda wav, *args, **kwargs: np.zeros(len(wav), dtype=bool))


def test_audible_clip_the_vad_misses_is_scored_with_a_warning(deaf_vad: None) -> None:
    from ge2e.errors import LowConfidenceSpeech

    quiet = np.zeros(SR // 2, dtype=np.float32)
    clip = np.concatenate([quiet, syllables(0.8), quiet])
    with pytest.warns(LowConfidenceSpeech, match=r"clip\.wav: the VAD found 0 ms of speech; scored the energy"):
        feats = preprocess(clip, sr=SR, name="clip.wav")
    # the energy trim drops the silence around the syllables (100 frames a second, padding aside)
    assert 70 <= len(feats) <= 100, len(feats)


def test_whole_clip_when_even_the_energy_trim_is_too_short(deaf_vad: None) -> None:
    from ge2e.errors import LowConfidenceSpeech

    clip = np.concatenate([np.zeros(SR // 4, dtype=np.float32), syllables(0.05, rate_hz=10.0)])
    cfg = AudioConfig(vad_pad_ms=0.0)
    with pytest.warns(LowConfidenceSpeech, match="scored the whole clip"):
        feats = preprocess(clip, sr=SR, cfg=cfg, name="blip.wav", min_speech_ms=250)
    assert len(feats) == 1 + (len(clip) - cfg.win_length) // cfg.hop_length


def test_steady_noise_is_still_refused_when_the_vad_misses(deaf_vad: None) -> None:
    hum = tone(100, 1.0, amp=0.3)
    with pytest.raises(NoSpeechError, match="steady sound"):
        preprocess(hum, sr=SR, name="hum.wav")


def test_refused_shared_clips_that_people_hear_are_scored(data_root: Path) -> None:
    """Clips silero keeps too little of (a 216 ms isolated word; keywords it hears no speech in) get a score."""
    import warnings

    from ge2e.errors import LowConfidenceSpeech

    clips = [
        "DSPSpeech-20/15307130191/15307130191-10-03.opus",
        "speech_commands_v0.02_test/right/475b61f1_nohash_0.opus",
    ]
    for clip in clips:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert preprocess(data_root / clip, min_speech_ms=250).shape[1] == 40
        assert any(issubclass(w.category, LowConfidenceSpeech) for w in caught), clip

"""Waveform augmentation: speed perturbation, additive noise at an SNR, simulated reverberation, telephone line,
babble and recording level."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ge2e.data.augment import (
    add_noise,
    augment,
    coloured_noise,
    parse_augment,
    pseudo_speaker,
    reverberate,
    rng_for,
    simulated_rir,
    speed_perturb,
    variants,
)
from ge2e.errors import Ge2eError

SR = 16_000


def harmonic(seconds: float = 1.0) -> np.ndarray:
    """A speech-like signal: 150 Hz harmonics under a 4 Hz syllable envelope."""
    t = np.arange(round(seconds * SR)) / SR
    tone = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 8))
    return (0.2 * tone * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_duration_and_pitch(factor: float) -> None:
    wav = harmonic(2.0)
    out = speed_perturb(wav, SR, factor)
    assert out.dtype == np.float32 and abs(len(out) - len(wav) / factor) <= 1
    # the fundamental moves by the same factor: a new voice, hence a pseudo-speaker
    spectrum = np.abs(np.fft.rfft(out))
    peak_hz = np.argmax(spectrum) * SR / len(out)
    assert abs(peak_hz - 150 * factor) < 3
    assert pseudo_speaker("103", f"speed{factor}") == f"103_sp{factor}"
    assert pseudo_speaker("103", "noise") == "103"


@pytest.mark.parametrize("snr_db", [0.0, 5.0, 12.5, 20.0])
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_noise_hits_snr(snr_db: float, beta: float) -> None:
    wav = harmonic()
    noise = coloured_noise(len(wav) // 3, beta, np.random.default_rng(1))  # shorter than wav: tiled
    out = add_noise(wav, noise, snr_db)
    assert out.shape == wav.shape and out.dtype == np.float32
    measured = 10 * np.log10(power(wav) / power(out - wav))
    assert abs(measured - snr_db) < 0.5


def test_coloured_noise_slope() -> None:
    rng = np.random.default_rng(0)
    white, brown = coloured_noise(SR, 0.0, rng), coloured_noise(SR, 2.0, rng)
    assert power(white) == pytest.approx(1.0, rel=1e-3) and np.isfinite(brown).all()

    def low_share(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x)) ** 2
        return float(spec[: len(spec) // 8].sum() / spec.sum())

    assert low_share(brown) > 0.9 > 0.5 > low_share(white)


def test_rir_decays_and_reverb_keeps_length() -> None:
    rng = np.random.default_rng(0)
    rir = simulated_rir(SR, 0.5, rng)
    assert len(rir) == SR // 2 and np.isfinite(rir).all()
    assert np.sum(rir.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-5)
    quarters = [power(q) for q in np.array_split(rir[1:], 4)]
    assert all(a > 10 * b for a, b in itertools.pairwise(quarters))  # ~15 dB per RT60/4

    wav = harmonic()
    out = reverberate(wav, rir)
    assert out.shape == wav.shape and out.dtype == np.float32 and np.isfinite(out).all()
    # an impulse comes out as a decaying tail
    click = np.zeros(SR, np.float32)
    click[100] = 1.0
    tail = reverberate(click, rir)[101:]
    assert power(tail[:1000]) > 100 * power(tail[6000:7000]) > 0


def test_augment_is_deterministic_per_file() -> None:
    wav = harmonic()
    a = augment(wav, SR, "noise", rng_for(0, "x.wav", "noise"))
    b = augment(wav, SR, "noise", rng_for(0, "x.wav", "noise"))
    c = augment(wav, SR, "noise", rng_for(0, "y.wav", "noise"))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert augment(wav, SR, "reverb", rng_for(0, "x.wav", "reverb")).shape == wav.shape
    with pytest.raises(ValueError, match="unknown"):
        augment(wav, SR, "pitch", rng_for(0, "x.wav", "pitch"))


def test_parse_augment() -> None:
    assert parse_augment("reverb, speed,,speed") == ["speed", "reverb"]
    assert parse_augment(None) == parse_augment("") == []
    assert variants(["speed", "noise"]) == ["speed0.9", "speed1.1", "noise"]
    with pytest.raises(Ge2eError, match="pitch"):
        parse_augment("speed,pitch")


def band_power(x: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / SR)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


@pytest.mark.parametrize("codec", ["ULAW", "GSM610"])
def test_telephone_keeps_the_voice_band_only(codec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ge2e.data import augment as module

    monkeypatch.setattr(module, "PHONE_CODECS", (codec,))
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(SR)).astype(np.float32)  # white: power in every band
    phone = augment(wav, SR, "telephone", rng_for(0, "x.wav", "telephone"))
    assert phone.shape == wav.shape and phone.dtype == np.float32
    # outside 300-3400 Hz little power is left: none above the 8 kHz line's band, a few % of codec noise (GSM's)
    # below it; inside, most of it passes
    assert band_power(phone, 3_600, 8_000) < 0.01 * band_power(wav, 3_600, 8_000)
    assert band_power(phone, 0, 250) < 0.05 * band_power(wav, 0, 250)
    assert band_power(phone, 500, 3_200) > 0.3 * band_power(wav, 500, 3_200)
    # the codec changes the waveform: not just a filter
    clean = module.band_limit(wav, SR, *module.PHONE_BAND_HZ)
    assert not np.allclose(phone, clean, atol=1e-3)


def test_telephone_is_deterministic_and_listed() -> None:
    wav = harmonic()
    a = augment(wav, SR, "telephone", rng_for(0, "x.wav", "telephone"))
    np.testing.assert_array_equal(a, augment(wav, SR, "telephone", rng_for(0, "x.wav", "telephone")))
    assert parse_augment("telephone,noise") == ["noise", "telephone"]
    assert variants(["telephone"]) == ["telephone"]


def test_babble_mixes_several_talkers_at_the_snr(tmp_path) -> None:
    import soundfile as sf

    from ge2e.data.augment import BABBLE_SNR_DB, babble

    rng = np.random.default_rng(1)
    files = []
    for k in range(6):  # six "talkers": tones of their own pitch
        t = np.arange(2 * SR) / SR
        sf.write(tmp_path / f"t{k}.wav", 0.3 * np.sin(2 * np.pi * (200 + 50 * k) * t), SR)
        files.append(str(tmp_path / f"t{k}.wav"))
    mix = babble(SR, SR, rng, files)
    spectrum = np.abs(np.fft.rfft(mix))
    peaks = sum(spectrum[200 + 50 * k] > 0.1 * spectrum.max() for k in range(6))  # 1 Hz bins over 1 s
    assert mix.shape == (SR,) and 3 <= peaks <= 5
    wav = harmonic()
    noisy = augment(wav, SR, "babble", rng_for(0, "x.wav", "babble"), files)
    snr = 10 * np.log10(power(wav) / power(noisy - wav))
    assert BABBLE_SNR_DB[0] - 0.01 <= snr <= BABBLE_SNR_DB[1] + 0.01
    with pytest.raises(Ge2eError, match="speech recordings"):
        augment(wav, SR, "babble", rng_for(0, "x.wav", "babble"))


def test_level_makes_quiet_quantised_or_loud_clipped_copies() -> None:
    wav = harmonic()
    quiet = loud = 0
    for k in range(20):
        copy = augment(wav, SR, "level", rng_for(0, f"{k}.wav", "level"))
        ratio = 10 * np.log10(power(copy) / power(wav))
        if ratio < 0:
            assert -50.5 <= ratio <= -19.5
            np.testing.assert_allclose(copy * 32767, np.round(copy * 32767), atol=1e-3)  # 16-bit steps
            quiet += 1
        else:
            assert np.abs(copy).max() == 1.0 and np.mean(np.abs(copy) == 1.0) > 0.01  # overloaded: clipped runs
            loud += 1
    assert quiet and loud
    assert parse_augment("level,babble,noise") == ["noise", "babble", "level"]


def test_prepare_refuses_babble_without_speech_to_mix(tmp_path) -> None:
    from ge2e.data.prepare import prepare
    from ge2e.data.readers import Utterance

    utt = Utterance(path=str(tmp_path / "a.wav"), speaker="s", corpus="c")
    with pytest.raises(Ge2eError, match="--augment babble needs --noise-dir"):
        prepare([utt], tmp_path / "feats", workers=1, progress=False, augment="babble")
    assert not list((tmp_path / "feats").glob("shard-*"))  # refused before any work

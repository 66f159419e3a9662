"""Inference (``ge2e.inference``): sliding windows, averaged normalised d-vectors, batches across utterances,
files, speakers."""

import numpy as np
import pytest
import torch

from ge2e.config import AudioConfig, InferenceConfig, ModelConfig
from ge2e.inference import Inference, embed_frames, embed_mels, normalize_average, window_starts, windows
from ge2e.model import SpeakerEncoder

TINY = ModelConfig(hidden_size=16, proj_size=8, num_layers=2)


@pytest.mark.parametrize(
    ("frames", "expected"),
    [(50, [0]), (160, [0]), (240, [0, 80]), (250, [0, 80, 90]), (400, [0, 80, 160, 240])],
)
def test_window_starts(frames, expected):
    assert window_starts(frames) == expected


def test_windows_cover_everything_and_short_utterance_is_one_window():
    mel = torch.arange(250.0).unsqueeze(1).repeat(1, 40)
    w = windows(mel)
    assert w.shape == (3, 160, 40)
    assert w[-1, -1, 0].item() == 249.0
    assert windows(mel[:50]).shape == (1, 50, 40)


def test_normalize_average_normalises_before_and_after_averaging():
    e = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(normalize_average(e), torch.tensor([1.0, 1.0]) / 2**0.5)


def test_embed_mel_matches_manual_windowing():
    model = SpeakerEncoder(TINY, inference=InferenceConfig())
    mel = np.random.default_rng(0).standard_normal((300, 40)).astype(np.float32)
    manual = normalize_average(embed_frames(model, windows(torch.from_numpy(mel)))).numpy()
    np.testing.assert_allclose(embed_mels(model, [mel])[0].numpy(), manual, rtol=1e-5, atol=1e-6)
    assert embed_mels(model, [mel[:40]])[0].numpy().shape == (8,)


def test_embed_mels_batches_across_utterances_like_one_by_one():
    model = SpeakerEncoder(TINY, inference=InferenceConfig(batch_windows=3))
    rng = np.random.default_rng(1)
    mels = [torch.from_numpy(rng.standard_normal((t, 40)).astype(np.float32)) for t in (50, 400, 160, 50, 250)]
    got = embed_mels(model, mels, model.inference)
    for u, mel in enumerate(mels):
        np.testing.assert_allclose(got[u].numpy(), embed_mels(model, [mel])[0].numpy(), rtol=1e-4, atol=1e-5)


def test_embed_files_skips_bad_files_and_keeps_going(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    voiced = (np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) * 0.3).astype(np.float32)
    good = tmp_path / "good.wav"
    sf.write(good, voiced + 0.01 * rng.standard_normal(32000).astype(np.float32), 16000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(rng.integers(0, 255, 100, dtype=np.uint8)))
    model = SpeakerEncoder(TINY, audio=AudioConfig(vad=False))
    result = Inference(model).embed_files([corrupt, good, tmp_path / "missing.wav"], progress=False)
    assert result.paths == [str(good)] and result.embeddings.shape == (1, 8)
    assert set(result.errors) == {str(corrupt), str(tmp_path / "missing.wav")}
    np.testing.assert_allclose(result.embeddings[0], Inference(model).embed_utterance(good), rtol=1e-4, atol=1e-5)


def test_encoder_methods_for_speakers_and_files(tmp_path):
    import soundfile as sf

    t = np.arange(32000) / 16000
    wav = (np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) * 0.3).astype(np.float32)
    paths = []
    for k in range(2):
        paths.append(tmp_path / f"{k}.wav")
        sf.write(paths[-1], np.roll(wav, 1000 * k), 16000)
    model = SpeakerEncoder(TINY, audio=AudioConfig(vad=False))
    result = Inference(model).embed_files(paths, progress=False)
    assert result.embeddings.shape == (2, 8)
    expected = result.embeddings.mean(0) / np.linalg.norm(result.embeddings.mean(0))
    np.testing.assert_allclose(Inference(model).embed_speaker(paths), expected, rtol=1e-4, atol=1e-5)

"""Speaker encoder: shapes, norms, gradient scale on projections, windows, checkpoints."""

import dataclasses

import numpy as np
import pytest
import torch

from ge2e.config import AudioConfig, InferenceConfig, ModelConfig
from ge2e.errors import CheckpointError, ConfigError
from ge2e.inference import embed_files, embed_mels, normalize_average, window_starts, windows
from ge2e.model import SpeakerEncoder, preset, stack_frames

TINY = ModelConfig(hidden_size=16, proj_size=8, num_layers=2)


def test_presets():
    paper = preset("paper")
    assert (paper.num_layers, paper.hidden_size, paper.proj_size) == (3, 768, 256)
    assert preset("fast") == dataclasses.replace(preset("small"), frame_stack=2)
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("huge")


def test_embed_frames_shape_and_unit_norm():
    model = SpeakerEncoder(TINY)
    out = model.embed_frames(torch.randn(5, 30, 40))
    assert out.shape == (5, 8)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(5))


def test_dvector_is_last_frame_output():
    model = SpeakerEncoder(TINY)
    x = torch.randn(2, 20, 40)
    out, _ = model.lstm(x)
    torch.testing.assert_close(model(x), torch.nn.functional.normalize(out[:, -1], dim=-1))


def test_stack_frames_joins_consecutive_frames_and_keeps_the_last():
    frames = torch.arange(2 * 7 * 3, dtype=torch.float32).reshape(2, 7, 3)
    stacked = stack_frames(frames, 2)
    assert stacked.shape == (2, 3, 6)
    # the odd first frame is dropped, so the last step holds frames 5 and 6, in order
    torch.testing.assert_close(stacked[:, -1], torch.cat([frames[:, 5], frames[:, 6]], dim=-1))
    torch.testing.assert_close(stacked[:, 0], torch.cat([frames[:, 1], frames[:, 2]], dim=-1))
    assert stack_frames(frames, 1) is frames


def test_frame_stacking_encoder_runs_the_lstm_over_stacked_steps():
    model = SpeakerEncoder(ModelConfig(hidden_size=16, proj_size=8, num_layers=2, frame_stack=3))
    assert model.lstm.input_size == 120
    x = torch.randn(2, 31, 40)
    out, _ = model.lstm(stack_frames(x, 3))
    assert out.shape[1] == 10
    torch.testing.assert_close(model(x), torch.nn.functional.normalize(out[:, -1], dim=-1))
    with pytest.raises(ConfigError, match="frame_stack"):
        ModelConfig(frame_stack=0)


def test_linear_layer_when_no_projection():
    model = SpeakerEncoder(ModelConfig(hidden_size=12, proj_size=0, num_layers=1))
    assert model.linear is not None and model.embedding_size == 12
    assert model.embed_frames(torch.randn(2, 10, 40)).shape == (2, 12)
    full = SpeakerEncoder(ModelConfig(hidden_size=12, proj_size=0, num_layers=1, proj_grad_scale=1.0))
    full.load_state_dict(model.state_dict())
    x = torch.randn(2, 10, 40)
    model(x).sum().backward()
    full(x).sum().backward()
    torch.testing.assert_close(model.linear.weight.grad, 0.5 * full.linear.weight.grad)
    torch.testing.assert_close(model.linear.bias.grad, full.linear.bias.grad)


def test_projection_gradient_scale():
    torch.manual_seed(0)
    half = SpeakerEncoder(TINY)
    full = SpeakerEncoder(ModelConfig(hidden_size=16, proj_size=8, num_layers=2, proj_grad_scale=1.0))
    full.load_state_dict(half.state_dict())
    x = torch.randn(3, 12, 40)
    half(x).sum().backward()
    full(x).sum().backward()
    for (name, p_half), (_, p_full) in zip(half.lstm.named_parameters(), full.lstm.named_parameters(), strict=True):
        factor = 0.5 if name.startswith("weight_hr") else 1.0
        torch.testing.assert_close(p_half.grad, factor * p_full.grad, msg=name)


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
    manual = normalize_average(model.embed_frames(windows(torch.from_numpy(mel)))).numpy()
    np.testing.assert_allclose(model.embed_mel(mel), manual, rtol=1e-5, atol=1e-6)
    assert model.embed_mel(mel[:40]).shape == (8,)


def test_checkpoint_round_trip(tmp_path):
    model = SpeakerEncoder(TINY)
    path = tmp_path / "m.pt"
    model.save(path, steps=3)
    loaded = SpeakerEncoder.load(path)
    x = torch.randn(2, 20, 40)
    torch.testing.assert_close(loaded.embed_frames(x), model.embed_frames(x))
    assert loaded.config == TINY and loaded.meta == {"steps": 3}
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        SpeakerEncoder.load(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="cannot read model file") as err:
        SpeakerEncoder.load(corrupt)
    assert "\n" not in str(err.value) and "corrupt.pt" in str(err.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a ge2e"):
        SpeakerEncoder.load(foreign)
    data = SpeakerEncoder(TINY).checkpoint()
    data["version"] = 99
    future = tmp_path / "future.pt"
    torch.save(data, future)
    with pytest.raises(CheckpointError, match="version 99"):
        SpeakerEncoder.load(future)
    data = SpeakerEncoder(TINY).checkpoint()
    data["model"]["hidden_size"] = 32
    mismatch = tmp_path / "mismatch.pt"
    torch.save(data, mismatch)
    with pytest.raises(CheckpointError, match="inconsistent"):
        SpeakerEncoder.load(mismatch)


def test_embed_mels_batches_across_utterances_like_one_by_one():
    model = SpeakerEncoder(TINY, inference=InferenceConfig(batch_windows=3))
    rng = np.random.default_rng(1)
    mels = [torch.from_numpy(rng.standard_normal((t, 40)).astype(np.float32)) for t in (50, 400, 160, 50, 250)]
    got = embed_mels(model, mels, model.inference)
    for u, mel in enumerate(mels):
        np.testing.assert_allclose(got[u].numpy(), model.embed_mel(mel), rtol=1e-4, atol=1e-5)


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
    result = embed_files(model, [corrupt, good, tmp_path / "missing.wav"], progress=False)
    assert result.paths == [str(good)] and result.embeddings.shape == (1, 8)
    assert set(result.errors) == {str(corrupt), str(tmp_path / "missing.wav")}
    np.testing.assert_allclose(result.embeddings[0], model.embed_utterance(good), rtol=1e-4, atol=1e-5)


def test_encoder_methods_for_speakers_and_files(tmp_path):
    import soundfile as sf

    t = np.arange(32000) / 16000
    wav = (np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) * 0.3).astype(np.float32)
    paths = []
    for k in range(2):
        paths.append(tmp_path / f"{k}.wav")
        sf.write(paths[-1], np.roll(wav, 1000 * k), 16000)
    model = SpeakerEncoder(TINY, audio=AudioConfig(vad=False))
    result = model.embed_files(paths, progress=False)
    assert result.embeddings.shape == (2, 8)
    expected = result.embeddings.mean(0) / np.linalg.norm(result.embeddings.mean(0))
    np.testing.assert_allclose(model.embed_speaker(paths), expected, rtol=1e-4, atol=1e-5)

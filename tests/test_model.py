"""Speaker encoder: shapes, norms, gradient scale on projections, checkpoints (its embedding windows and
files: tests/test_inference.py)."""

import dataclasses

import pytest
import torch

from ge2e.config import ModelConfig
from ge2e.errors import CheckpointError, ConfigError
from ge2e.inference import embed_frames
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
    out = embed_frames(model, torch.randn(5, 30, 40))
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
    assert embed_frames(model, torch.randn(2, 10, 40)).shape == (2, 12)
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


def test_checkpoint_round_trip(tmp_path):
    model = SpeakerEncoder(TINY)
    path = tmp_path / "m.pt"
    model.save(path, steps=3)
    loaded = SpeakerEncoder.load(path)
    x = torch.randn(2, 20, 40)
    torch.testing.assert_close(embed_frames(loaded, x), embed_frames(model, x))
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

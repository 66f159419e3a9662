"""The speaker encoder: an LSTM with projection whose last-frame output is the d-vector (paper, Sec. 4).

Checkpoints are self-describing: weights plus the model, audio and inference configs and a format version,
so a model can be rebuilt without any global hyper-parameters.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ge2e.config import AudioConfig, InferenceConfig, ModelConfig
from ge2e.errors import CheckpointError
from ge2e.files import atomic_write

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "ge2e.SpeakerEncoder"
CHECKPOINT_VERSION = 1

# "small" is sized for CPU training and inference: 3 x 256 cells and the paper's linear layer after the last frame
# (the size of Resemblyzer's encoder), about 5x cheaper per training step than "paper" (benchmarks/presets.py,
# benchmarks/train_step.py). Without a projection it also keeps PyTorch's oneDNN LSTM kernel on CPU.
# "fast" is "small" reading two frames per LSTM step: half the sequential steps, so about twice the training steps
# and embeddings per CPU-second, and the lowest dev EER after one CPU-hour of the encoders compared from scratch
# (docs/encoder_choice.md): the bundled model's encoder.
PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(hidden_size=768, proj_size=256, num_layers=3),
    "small": ModelConfig(hidden_size=256, proj_size=0, num_layers=3),
    "fast": ModelConfig(hidden_size=256, proj_size=0, num_layers=3, frame_stack=2),
    # The paper's text-dependent (keyword) model: 3 x 128 cells, projection 64, trained on 80-frame segments.
    "keyword": ModelConfig(hidden_size=128, proj_size=64, num_layers=3),
}


def preset(name: str) -> ModelConfig:
    """A copy of a named model preset (``"paper"``, ``"small"``, ``"fast"`` or ``"keyword"``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name])


class SpeakerEncoder(nn.Module):
    """LSTM speaker encoder mapping ``(B, T, n_mels)`` log-mel frames to ``(B, D)`` L2-normalised d-vectors.

    Args:
        config: a :class:`ModelConfig` or a preset name.
        audio: the front end the model expects (stored in checkpoints).
        inference: sliding-window settings for whole utterances.

    A plain module: whole utterances, files and speakers are embedded by :class:`ge2e.inference.Inference`
    (``Inference(model)``, or :func:`ge2e.load_model`), which reads ``audio`` and ``inference`` from it.
    """

    def __init__(
        self,
        config: ModelConfig | str = "small",
        audio: AudioConfig | None = None,
        inference: InferenceConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = preset(config) if isinstance(config, str) else config
        self.audio = audio or AudioConfig()
        self.inference = inference or InferenceConfig()
        c = self.config
        if c.n_mels != self.audio.n_mels:
            raise ValueError(f"model expects {c.n_mels} mel bands but the audio config gives {self.audio.n_mels}")
        self.lstm = nn.LSTM(c.input_size, c.hidden_size, c.num_layers, batch_first=True, proj_size=c.proj_size)
        # Without a projection, the paper puts a linear layer after the LSTM.
        self.linear = nn.Linear(c.hidden_size, c.hidden_size) if c.proj_size == 0 else None
        self._scale_projection_gradients(c.proj_grad_scale)

    @property
    def embedding_size(self) -> int:
        """D, the d-vector size."""
        return self.config.proj_size or self.config.hidden_size

    def projection_parameters(self) -> list[nn.Parameter]:
        """The projection weights: the LSTM's ``weight_hr`` matrices, or the linear layer that replaces them."""
        projections = [p for name, p in self.lstm.named_parameters() if name.startswith("weight_hr")]
        if self.linear is not None:
            projections.append(self.linear.weight)
        return projections

    def _scale_projection_gradients(self, scale: float) -> None:
        """Multiply gradients of the projection weights by ``scale`` (paper: 0.5)."""
        if scale == 1.0:
            return
        for param in self.projection_parameters():
            param.register_hook(lambda grad, s=scale: grad * s)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """d-vectors of fixed-length segments.

        Args:
            frames: ``(B, T, n_mels)`` log-mel frames.

        Returns:
            ``(B, D)`` L2-normalised output of the last frame.
        """
        return last_frame_dvector(self.lstm, self.linear, frames, self.config.frame_stack)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- checkpoints -------------------------------------------------------------------------------

    def checkpoint(self, **meta: Any) -> dict[str, Any]:
        """The self-describing checkpoint dictionary (weights on CPU)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model": dataclasses.asdict(self.config),
            "audio": dataclasses.asdict(self.audio),
            "inference": dataclasses.asdict(self.inference),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "meta": meta,
        }

    def save(self, path: str | Path, **meta: Any) -> None:
        """Write a checkpoint atomically (temp file, then rename), so a crash never leaves half a file."""
        atomic_torch_save(self.checkpoint(**meta), path)

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any], path: str | Path = "<checkpoint>") -> SpeakerEncoder:
        """Rebuild an encoder from :meth:`checkpoint`'s dictionary; raises :class:`CheckpointError`."""
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(path, "not a ge2e speaker-encoder checkpoint")
        if data.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(
                path, f"checkpoint format version {data.get('version')} (this ge2e reads {CHECKPOINT_VERSION})"
            )
        try:
            model = cls(
                ModelConfig(**data["model"]), AudioConfig(**data["audio"]), InferenceConfig(**data["inference"])
            )
            model.load_state_dict(data["state_dict"])
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise CheckpointError(path, f"inconsistent checkpoint ({str(exc).splitlines()[0]})") from None
        model.meta = dict(data.get("meta") or {})
        return model.eval()

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> SpeakerEncoder:
        """Load a checkpoint file written by :meth:`save`; every failure is a one-line :class:`CheckpointError`."""
        return cls.from_checkpoint(read_checkpoint(path), path).to(device)


def stack_frames(frames: torch.Tensor, k: int) -> torch.Tensor:
    """``(B, T, F)`` -> ``(B, T // k, k * F)``: each step holds k consecutive frames, the last step the last k.

    The first ``T % k`` frames are dropped, so the d-vector still reads the final frame whatever T is.
    """
    if k == 1:
        return frames
    batch, length, bands = frames.shape
    return frames[:, length % k :].reshape(batch, -1, k * bands)


def last_frame_dvector(lstm: nn.LSTM, head: nn.Module | None, frames: torch.Tensor, frame_stack: int) -> torch.Tensor:
    """``(B, T, n_mels)`` frames -> ``(B, D)``: the L2-normalised last-frame output of ``lstm`` (and ``head``).

    The one definition of the d-vector, shared by the training encoder and its export-friendly twin.
    """
    out, _ = lstm(stack_frames(frames, frame_stack))
    last = out[:, -1]
    if head is not None:
        last = head(last)
    return F.normalize(last, dim=-1)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with safe unpickling and one-line errors for missing, corrupt or foreign files."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "model file not found")
    if path.is_dir():
        raise CheckpointError(path, "is a directory, not a model file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt zips and pickles
        logger.debug("torch.load(%s) failed: %r", path, exc)
        raise CheckpointError(path, "cannot read model file: not a PyTorch checkpoint, or corrupt") from None


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically (see :func:`ge2e.files.atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))

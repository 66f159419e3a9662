"""Deployment: ONNX and TorchScript export, an onnxruntime encoder, and dynamic int8 quantisation.

Every exported file maps ``(B, T, n_mels)`` log-mel frames (B and T dynamic) to ``(B, D)`` L2-normalised
d-vectors, exactly like :meth:`ge2e.model.SpeakerEncoder.forward`, and carries the model, audio and inference
configs as JSON metadata (ONNX ``metadata_props`` / a TorchScript extra file), so the loaded encoder runs the
same front end and sliding windows, and the model's calibration record, so the decisions keep their threshold.
:func:`load_exported` returns a plain frames -> d-vector encoder like :class:`SpeakerEncoder`; load it with
:func:`ge2e.load_model` (or ``--model x.onnx`` on any command), which wraps it in an Inference::

    ge2e export --format onnx model.pt model.onnx
    enc = ge2e.load_model("model.onnx")         # needs onnxruntime: pip install 'ge2e[export]'
    enc.embed_files(paths).embeddings           # (U, D) float32

LSTMs with a projection (the paper preset) are neither exportable to ONNX nor quantisable by PyTorch; they are
first folded into an equivalent LSTM without projection (:func:`fold_projection`).
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ge2e.config import AudioConfig, InferenceConfig, ModelConfig
from ge2e.errors import CheckpointError, Ge2eError
from ge2e.files import atomic_write_path
from ge2e.model import SpeakerEncoder, last_frame_dvector

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[Format, ...] = ("onnx", "torchscript")
METADATA_KEY = "ge2e"
EXPORT_FORMAT = "ge2e.ExportedEncoder"
EXPORT_VERSION = 1
ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "frames", "embeddings"
PARITY_COSINE = 0.9999  # an exported float32 encoder must reproduce PyTorch's d-vectors at least this closely


class InferenceEncoder(nn.Module):
    """The inference-only form of a :class:`SpeakerEncoder`: LSTM, optional linear head, L2 normalisation.

    A plain ``(B, T, n_mels) -> (B, D)`` module, so folded, quantised or traced encoders run through the usual
    inference path (:class:`ge2e.inference.Inference`).

    Args:
        lstm: batch-first LSTM, with or without projection.
        head: linear layer applied to the last frame's output, or None.
        config, audio, inference: the configs of the encoder this was derived from.
    """

    def __init__(
        self,
        lstm: nn.Module,
        head: nn.Module | None,
        config: ModelConfig,
        audio: AudioConfig,
        inference: InferenceConfig,
    ) -> None:
        super().__init__()
        self.lstm, self.head = lstm, head
        self.config, self.audio, self.inference = config, audio, inference
        # int8 layers keep packed weights, not parameters, so the device is read from this empty one
        self.device_anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    @property
    def embedding_size(self) -> int:
        return self.config.proj_size or self.config.hidden_size

    @property
    def device(self) -> torch.device:
        return self.device_anchor.device

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, n_mels)`` frames -> ``(B, D)`` L2-normalised d-vectors of the last frame."""
        return last_frame_dvector(self.lstm, self.head, frames, self.config.frame_stack)


def fold_projection(model: SpeakerEncoder) -> InferenceEncoder:
    """The same function as ``model`` built from a standard LSTM (no ``proj_size``): ONNX- and int8-friendly.

    A projected layer feeds ``r_t = W_hr h_t`` to its own recurrence and to the next layer, so replacing
    ``W_hh`` by ``W_hh W_hr`` and the next layer's ``W_ih`` by ``W_ih W_hr`` gives an LSTM over the unprojected
    ``h_t`` with the same cell states; the last layer's ``W_hr`` becomes a bias-free linear head. The result
    is equal up to float rounding, at about 1.8x the multiply-adds of the projected LSTM.
    """
    c = model.config
    if c.proj_size == 0:
        return InferenceEncoder(
            copy.deepcopy(model.lstm), copy.deepcopy(model.linear), c, model.audio, model.inference
        ).eval()
    src = dict(model.lstm.named_parameters())
    lstm = nn.LSTM(c.input_size, c.hidden_size, c.num_layers, batch_first=True)
    with torch.no_grad():
        for layer in range(c.num_layers):
            w_ih = src[f"weight_ih_l{layer}"]
            if layer > 0:
                w_ih = w_ih @ src[f"weight_hr_l{layer - 1}"]
            getattr(lstm, f"weight_ih_l{layer}").copy_(w_ih)
            getattr(lstm, f"weight_hh_l{layer}").copy_(src[f"weight_hh_l{layer}"] @ src[f"weight_hr_l{layer}"])
            getattr(lstm, f"bias_ih_l{layer}").copy_(src[f"bias_ih_l{layer}"])
            getattr(lstm, f"bias_hh_l{layer}").copy_(src[f"bias_hh_l{layer}"])
        head = nn.Linear(c.hidden_size, c.proj_size, bias=False)
        head.weight.copy_(src[f"weight_hr_l{c.num_layers - 1}"])
    return InferenceEncoder(lstm, head, c, model.audio, model.inference).to(model.device).eval()


def quantize_int8(model: SpeakerEncoder) -> InferenceEncoder:
    """Dynamic int8 quantisation of the LSTM and linear layers (CPU): int8 weights, activations quantised on
    the fly per batch. Projected LSTMs are folded first (:func:`fold_projection`); PyTorch cannot quantise them.
    """
    folded = fold_projection(model).cpu()
    with warnings.catch_warnings():
        # torch.ao.quantization and its qint8 tensors warn that they will move to torchao, which has no dynamic
        # int8 LSTM yet; until it does, this is the only int8 LSTM PyTorch runs on CPU
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(folded, {nn.LSTM, nn.Linear}, dtype=torch.qint8)


# ---------------------------------------------------------------------------------------------------- export


@dataclass
class ExportReport:
    """What :func:`export` wrote, and how closely the file reproduces the PyTorch encoder on probe frames."""

    path: Path
    format: Format
    int8: bool
    min_cosine: float  # lowest cosine between exported and PyTorch d-vectors on the probe batch
    size_bytes: int


def _metadata(model: SpeakerEncoder, int8: bool, calibration: dict[str, Any] | None) -> str:
    return json.dumps(
        {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "model": dataclasses.asdict(model.config),
            "audio": dataclasses.asdict(model.audio),
            "inference": dataclasses.asdict(model.inference),
            "int8": int8,
            # loading restores it, so an exported model decides with its source's threshold
            "calibration": calibration,
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
        }
    )


def _probe(model: SpeakerEncoder) -> torch.Tensor:
    """Deterministic ``(3, T, n_mels)`` frames around the window length, for tracing and the parity check."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(3, model.inference.window_frames, model.config.n_mels, generator=gen)


class _DropMessage(logging.Filter):
    """A logging filter that drops records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _write_onnx(model: SpeakerEncoder, tmp: Path, int8: bool, opset: int, calibration: dict | None) -> None:
    try:
        import onnx
    except ImportError:
        raise Ge2eError("ONNX export needs the onnx package: pip install 'ge2e[export]'") from None
    module = fold_projection(model).cpu()
    with warnings.catch_warnings():
        # the TorchScript-based exporter is deprecated in favour of dynamo, which cannot export nn.LSTM
        # without onnxscript; the graph it writes is standard opset-17 ONNX
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (_probe(model),),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 1: "time"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = tmp.with_name(tmp.name + ".fp32")
        # onnxruntime logs advice to run its shape-inference pre-pass on the root logger; that pass gives
        # nothing for an LSTM graph (its shapes are already known) and takes seconds, so the advice is muted
        mute = _DropMessage("pre-processing before quantization")
        logging.getLogger().addFilter(mute)
        try:
            os.replace(tmp, fp32)
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
        finally:
            logging.getLogger().removeFilter(mute)
            fp32.unlink(missing_ok=True)
    proto = onnx.load(str(tmp))
    _set_onnx_metadata(proto, _metadata(model, int8, calibration))
    onnx.save(proto, str(tmp))


def _set_onnx_metadata(proto: Any, text: str) -> None:
    """Set the ge2e entry of an ``onnx.ModelProto``'s metadata, replacing any earlier one."""
    kept = [(e.key, e.value) for e in proto.metadata_props if e.key != METADATA_KEY]
    del proto.metadata_props[:]
    for key, value in [*kept, (METADATA_KEY, text)]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _save_torchscript(module: Any, tmp: Path, text: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, but TorchScript is what C++ and mobile load
        torch.jit.save(module, str(tmp), _extra_files={f"{METADATA_KEY}.json": text})


def _write_torchscript(model: SpeakerEncoder, tmp: Path, int8: bool, calibration: dict | None) -> None:
    # float32 keeps the projected LSTM (faster than its folded form); int8 needs the folded one
    module = quantize_int8(model) if int8 else InferenceEncoder(
        model.lstm, model.linear, model.config, model.audio, model.inference
    ).cpu().eval()  # fmt: skip
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit is deprecated
        traced = torch.jit.trace(module, _probe(model), check_trace=False)
    _save_torchscript(traced, tmp, _metadata(model, int8, calibration))


def export(
    model: SpeakerEncoder,
    path: str | Path,
    fmt: Format = "onnx",
    int8: bool = False,
    opset: int = ONNX_OPSET,
    calibration: dict[str, Any] | None = None,
) -> ExportReport:
    """Write ``model`` as an ONNX or TorchScript encoder, atomically, and check it against PyTorch.

    Args:
        model: the encoder to export (any device; exported on CPU).
        path: output file (``.onnx`` or ``.pt``/``.ts`` by convention).
        fmt: ``"onnx"`` or ``"torchscript"``.
        int8: dynamic int8 quantisation of the LSTM and linear weights (onnxruntime's for ONNX, PyTorch's for
            TorchScript).
        opset: ONNX opset version (>= 14).
        calibration: the model's calibration record, stored in the file (``Inference.calibration``).

    Returns:
        An :class:`ExportReport`, with the lowest cosine between the file's and PyTorch's d-vectors on a fixed
        probe batch (float32 exports reach > 0.9999; int8 is lower).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if opset < 14:
        raise ValueError(f"opset must be >= 14, got {opset}")
    path = Path(path)
    model = copy.deepcopy(model).cpu().eval()
    if fmt == "onnx":
        atomic_write_path(path, lambda tmp: _write_onnx(model, tmp, int8, opset, calibration))
    else:
        atomic_write_path(path, lambda tmp: _write_torchscript(model, tmp, int8, calibration))
    probe = _probe(model)
    with torch.inference_mode():
        expected = model(probe)
        got = load_exported(path)(probe)
    cosine = float((expected * got).sum(dim=-1).min())
    return ExportReport(path, fmt, int8, cosine, path.stat().st_size)


# ---------------------------------------------------------------------------------------------------- loading


class ExportedEncoder(abc.ABC):
    """An exported encoder file: a plain frames -> d-vector encoder like :class:`SpeakerEncoder`.

    Attributes: ``config``, ``audio``, ``inference``, ``metadata`` (the file's, as read),
    ``embedded_calibration`` (from the metadata; :func:`ge2e.pretrained.load_model` hands it to the Inference),
    ``embedding_size``, ``int8``, ``path``. Call it on ``(B, T, n_mels)`` float32 frames to get ``(B, D)``
    unit-norm d-vectors.
    """

    def __init__(self, path: Path, metadata: dict[str, Any]) -> None:
        self.path, self.metadata = path, metadata
        if metadata.get("format") != EXPORT_FORMAT:
            raise CheckpointError(path, "not a ge2e exported encoder (metadata format missing)")
        if metadata.get("version") != EXPORT_VERSION:
            raise CheckpointError(
                path, f"export format version {metadata.get('version')} (this ge2e reads {EXPORT_VERSION})"
            )
        try:
            self.config = ModelConfig(**metadata["model"])
            self.audio = AudioConfig(**metadata["audio"])
            self.inference = InferenceConfig(**metadata["inference"])
            self.int8 = bool(metadata["int8"])
            calibration = metadata.get("calibration")
            self.embedded_calibration = None if calibration is None else {
                **calibration, "threshold": float(calibration["threshold"])
            }  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(path, f"invalid ge2e metadata ({_first_line(exc)})") from None

    @property
    def embedding_size(self) -> int:
        return self.config.proj_size or self.config.hidden_size

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @abc.abstractmethod
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, n_mels)`` float32 frames -> ``(B, D)`` unit-norm d-vectors."""


class OnnxEncoder(ExportedEncoder):
    """An ONNX encoder run by onnxruntime (CPU).

    Args:
        path: a file written by ``ge2e export --format onnx``.
        threads: intra-op threads (default: PyTorch's setting, ``torch.get_num_threads()``, so that one
            ``--threads`` option governs every encoder).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        path = _existing_file(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise Ge2eError("running ONNX models needs onnxruntime: pip install 'ge2e[export]'") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise CheckpointError(path, f"cannot load ONNX model ({_first_line(exc)})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise CheckpointError(path, "ONNX model without ge2e metadata (not written by `ge2e export`)")
        super().__init__(path, json.loads(raw))

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, n_mels)`` frames -> ``(B, D)`` d-vectors."""
        array = np.ascontiguousarray(frames.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])


class TorchScriptEncoder(ExportedEncoder):
    """A TorchScript encoder (``torch.jit.load``), run on CPU."""

    def __init__(self, path: str | Path) -> None:
        path = _existing_file(path)
        extra = {f"{METADATA_KEY}.json": ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:  # torch raises RuntimeError or ValueError for foreign archives
            raise CheckpointError(path, f"cannot load TorchScript model ({_first_line(exc)})") from None
        if not extra[f"{METADATA_KEY}.json"]:
            raise CheckpointError(path, "TorchScript model without ge2e metadata (not written by `ge2e export`)")
        super().__init__(path, json.loads(extra[f"{METADATA_KEY}.json"]))
        self.module.eval()

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(frames.to(torch.float32))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "model file not found")
    if path.is_dir():
        raise CheckpointError(path, "is a directory, not a model file")
    return path


def load_exported(path: str | Path, threads: int | None = None) -> OnnxEncoder | TorchScriptEncoder:
    """Open a file written by :func:`export`: TorchScript archives are zip files, anything else is tried as ONNX.

    Args:
        path: the exported file.
        threads: onnxruntime intra-op threads (ONNX only; TorchScript follows ``torch.set_num_threads``).

    Raises:
        CheckpointError: missing file, unreadable model, or no ge2e metadata (one line naming the file).
    """
    path = _existing_file(path)
    with path.open("rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    return TorchScriptEncoder(path) if is_zip else OnnxEncoder(path, threads)


def write_calibration(path: str | Path, calibration: dict[str, Any]) -> None:
    """Store ``calibration`` in an exported file's ge2e metadata (rewritten atomically), where loading finds it.

    Raises:
        CheckpointError: not a ge2e exported encoder; OutputError: the file cannot be rewritten.
    """
    exported = load_exported(path)
    text = json.dumps({**exported.metadata, "calibration": calibration})
    if isinstance(exported, TorchScriptEncoder):
        atomic_write_path(exported.path, lambda tmp: _save_torchscript(exported.module, tmp, text))
        return
    import onnx  # present: onnxruntime, needed to open the file, comes with the same extra

    proto = onnx.load(str(exported.path))
    _set_onnx_metadata(proto, text)
    atomic_write_path(exported.path, lambda tmp: onnx.save(proto, str(tmp)))

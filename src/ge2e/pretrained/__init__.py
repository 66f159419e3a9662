"""Loading models: the bundled ``ge2e_small.pt`` (weights, self-describing) with ``ge2e_small.json`` (its
calibration), ``ge2e_small.diarization.json`` (its diarization settings) and its int8 ONNX export
``ge2e_small.int8.onnx``, checkpoints, and exported ONNX / TorchScript encoders, all through :func:`load_model`.

The calibration record is written by ``ge2e calibrate`` (:mod:`ge2e.calibration`): beside a checkpoint as JSON,
inside an exported file's metadata. The diarization settings are written by ``recipes/diarization/tune.py``
beside the weights they were tuned with (:func:`tuning_path`); each record lists the fingerprints it holds for,
and a model whose fingerprint it does not list gets none (and the untuned defaults).
A model's one fingerprint is the SHA-256 of its file (:func:`file_sha256`), kept as ``model.fingerprint``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ge2e.errors import CheckpointError, Ge2eError
from ge2e.export import load_exported
from ge2e.inference import Inference
from ge2e.model import SpeakerEncoder

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "ge2e_small.pt"
# The bundled model exported by `ge2e export --format onnx --int8` and calibrated on the same dev lists
# (recipes/shared_ti/run.sh, stage 7): about 2x the float32 encoder's speed on one core with test EERs within 0.3 points
# (benchmarks/quantize.py, docs/performance.md), so it is what load_model() runs where onnxruntime is installed.
BUNDLED_INT8 = "ge2e_small.int8.onnx"
ONNX_SUFFIXES = (".onnx", ".ort")


def bundled_model_path(int8: bool = False) -> Path:
    """Path of the model file shipped inside the package (it may be missing in a source checkout): the float32
    checkpoint, or with ``int8=True`` its int8 ONNX export."""
    return Path(str(resources.files("ge2e.pretrained").joinpath(BUNDLED_INT8 if int8 else BUNDLED_MODEL)))


def onnxruntime_available() -> bool:
    """Whether onnxruntime can be imported (it comes with the ``export`` extra)."""
    return importlib.util.find_spec("onnxruntime") is not None


def calibration_path(model_path: str | Path) -> Path:
    """The calibration file of a model: the same path with a ``.json`` suffix (``best.pt`` -> ``best.json``)."""
    return Path(model_path).with_suffix(".json")


def tuning_path(model_path: str | Path) -> Path:
    """The diarization settings of a model file: ``<name up to its first dot>.diarization.json`` beside it, so the
    bundled checkpoint and its int8 export share ``ge2e_small.diarization.json``."""
    path = Path(model_path)
    return path.with_name(path.name.split(".")[0] + ".diarization.json")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks: the fingerprint of a model file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(
    path: str | Path | None = None, device: str | torch.device = "cpu", *, int8: bool | None = None
) -> Inference:
    """Load a speaker encoder wrapped in its :class:`~ge2e.inference.Inference`, with no network access.

    Args:
        path: a checkpoint written by ``ge2e train`` or :meth:`SpeakerEncoder.save` (``.pt``), or an encoder
            written by ``ge2e export`` (``.onnx``, or a TorchScript archive such as ``.ts``); ``None`` loads the
            model bundled with the package.
        device: where to put a PyTorch model (``"cpu"``, ``"cuda"``, ...); exported encoders run on CPU.
        int8: which form of the bundled model (``path=None`` only): ``None`` picks its int8 ONNX export where
            onnxruntime is installed and ``device`` is the CPU, else the float32 checkpoint (a
            :class:`SpeakerEncoder`, e.g. for fine-tuning); ``True`` or ``False`` choose.

    Returns:
        An :class:`~ge2e.inference.Inference` whose ``encoder`` is a :class:`SpeakerEncoder` in eval mode for
        checkpoints, an exported encoder otherwise. Loaded
        models are cached per process, keyed by file, modification times (of the file and of its calibration
        file) and device, so repeated calls are free
        and return the same object. ``model.calibration`` holds the calibration record (see
        :func:`default_threshold`) or ``None``; ``model.fingerprint`` the SHA-256 of the file.

    Raises:
        CheckpointError: the file is missing, corrupt or not a ge2e model (one line naming the file).
        Ge2eError: ``int8`` given with a ``path``, or ``int8=True`` without onnxruntime.
    """
    if path is None:
        resolved = bundled_model_path(_bundled_int8(int8, torch.device(device)))
        if not resolved.exists():
            raise CheckpointError(
                resolved, "the bundled model file is missing; reinstall ge2e or pass a checkpoint path"
            )
    elif int8 is not None:
        raise Ge2eError("int8= chooses a form of the bundled model; to quantise a checkpoint, ge2e export --int8 it")
    else:
        resolved = Path(path).expanduser()
    # a calibration written after loading (ge2e calibrate in the same process) must reach the next load
    mtimes = tuple(p.stat().st_mtime_ns if p.is_file() else 0 for p in (resolved, calibration_path(resolved)))
    return _load_cached(str(resolved.resolve()), mtimes, str(torch.device(device)))


def _bundled_int8(int8: bool | None, device: torch.device) -> bool:
    """Whether to load the bundled model's int8 ONNX export (see :func:`load_model`)."""
    if int8 is None:
        return device.type == "cpu" and onnxruntime_available()
    if int8 and not onnxruntime_available():
        raise Ge2eError("the bundled int8 model runs on onnxruntime: pip install 'ge2e[export]'")
    if int8 and device.type != "cpu":
        raise Ge2eError(f"the bundled int8 model runs on the CPU only, not on {device}")
    return int8


def is_exported(path: Path) -> bool:
    """Whether ``path`` is an encoder written by ``ge2e export`` (not a checkpoint). ONNX by suffix; TorchScript
    archives are zip files like checkpoints, but hold compiled ``code/``."""
    if path.suffix.lower() in ONNX_SUFFIXES:
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtimes_ns: tuple[int, int], device: str) -> Inference:
    """Load once per (file, version, device); ``mtimes_ns`` is part of the key so a rewritten file is reloaded."""
    file = Path(path)
    exported = file.is_file() and is_exported(file)
    encoder = load_exported(file) if exported else SpeakerEncoder.load(file, device)
    fingerprint = file_sha256(file)
    # an exported file carries its source's calibration; a checkpoint's lies beside it
    calibration = getattr(encoder, "embedded_calibration", None) or _read_calibration(file, fingerprint)
    return Inference(encoder, calibration, fingerprint, read_tuning(file, fingerprint))


def read_tuning(model_path: str | Path, sha256: str | None = None) -> dict[str, Any] | None:
    """The diarization settings beside ``model_path`` (:func:`tuning_path`), or ``None`` when absent or when
    ``sha256`` (the model's fingerprint; ``None``: not checked) is not among the fingerprints it lists."""
    json_path = tuning_path(model_path)
    if not json_path.exists():
        return None
    try:
        record = json.loads(json_path.read_text())
        fingerprints = list(record["fingerprints"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(json_path, f"unreadable diarization settings ({exc})") from None
    if sha256 is not None and sha256 not in fingerprints:
        # settings tuned on another model's d-vectors would count speakers with the wrong scale
        logger.warning("%s was tuned for another model than %s; ignoring it", json_path, Path(model_path).name)
        return None
    return record


def _read_calibration(model_path: Path, sha256: str) -> dict[str, Any] | None:
    """The calibration record beside ``model_path``, or ``None`` when absent or made for another file."""
    json_path = calibration_path(model_path)
    if not json_path.exists():
        return None
    try:
        record = json.loads(json_path.read_text())
        threshold = float(record["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(json_path, f"unreadable calibration file ({exc})") from None
    if record.get("model_sha256") not in (None, sha256):
        # a stale threshold silently biases every decision, so it is dropped rather than used
        logger.warning("%s was calibrated for another version of %s; ignoring it", json_path, model_path.name)
        return None
    return {**record, "threshold": threshold}


def default_threshold(model: Inference) -> float:
    """The model's calibrated decision threshold (cosine score).

    ``ge2e calibrate`` chooses it on development trials (the bundled model's: the equal-error-rate point of the
    official dev lists, pooled) and stores it beside the checkpoint (``ge2e export`` copies it into the file);
    ``model.calibration`` holds the full record and :func:`threshold_origin` says where it came from.

    Raises:
        Ge2eError: the model has no (valid) calibration; pass ``threshold=`` explicitly instead.
    """
    calibration = getattr(model, "calibration", None)
    if not calibration:
        raise Ge2eError(
            "this model has no calibrated threshold: pass --threshold (threshold=), or calibrate it on "
            "development data: ge2e calibrate --model MODEL --trials LIST.txt (or --folder DIR)"
        )
    return float(calibration["threshold"])


def threshold_origin(model: Inference) -> str:
    """One line saying what the model's calibrated threshold is: its value, criterion and data."""
    calibration = getattr(model, "calibration", None) or {}
    method = calibration.get("method", "no description stored with it")
    return f"threshold {default_threshold(model):.3f} is the model's calibration: {method}"

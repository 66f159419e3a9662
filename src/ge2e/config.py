"""Typed configuration. Every number of the paper is a named default here, never a literal in code.

YAML files hold plain data only: ``load_config(path)`` maps their sections onto these dataclasses and rejects
unknown keys, so a typo fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from ge2e.errors import ConfigError
from ge2e.files import atomic_write

# A field naming a file or folder: checked to be a one-line string when a config is loaded
PathStr = Annotated[str, "path"]


@dataclass
class AudioConfig:
    """The audio front end: 16 kHz mono, 40 log-mel energies, 25 ms window, 10 ms hop (paper, Sec. 4)."""

    sample_rate: int = 16_000
    n_mels: int = 40
    window_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    f_min: float = 20.0
    f_max: float = 7_600.0
    normalization: Literal["peak", "loudness", "none"] = "loudness"
    target_dbfs: float = -30.0
    vad: bool = True
    vad_threshold: float = 0.5
    vad_pad_ms: float = 60.0
    min_speech_ms: float = 250.0
    mean_normalize: bool = True

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.window_ms / 1000)


@dataclass
class ModelConfig:
    """LSTM with projection. The defaults are the paper's: 3 layers, 768 cells, 256 projection."""

    n_mels: int = 40
    hidden_size: int = 768
    proj_size: int = 256
    num_layers: int = 3
    proj_grad_scale: float = 0.5
    # Consecutive frames joined into one LSTM input (1: the paper's one frame per step). k runs the recurrence
    # over T/k steps of k * n_mels features: about k times fewer sequential steps for CPU training and inference.
    frame_stack: int = 1

    def __post_init__(self) -> None:
        if self.frame_stack < 1:
            raise ConfigError(f"model.frame_stack must be at least 1, got {self.frame_stack}")

    @property
    def input_size(self) -> int:
        """Features the first LSTM layer reads per step: ``frame_stack`` frames of ``n_mels`` bands."""
        return self.n_mels * self.frame_stack


@dataclass
class InferenceConfig:
    """Sliding windows of 160 frames with 50% overlap (paper, Sec. 4)."""

    window_frames: int = 160
    overlap: float = 0.5
    batch_windows: int = 256

    @property
    def hop_frames(self) -> int:
        return max(1, round(self.window_frames * (1.0 - self.overlap)))


@dataclass
class LossConfig:
    """GE2E similarity scale and bias: w init 10, b init -5, w kept > 0 (paper, Sec. 2.1)."""

    method: Literal["softmax", "contrast", "te2e"] = "softmax"
    init_w: float = 10.0
    init_b: float = -5.0
    min_w: float = 1e-6
    grad_scale: float = 0.01
    te2e_enroll: int = 0  # P enrollment utterances per centroid for TE2E; 0 means M - 1
    # The paper's ablations (GE2E only): the centroid of e_ji's own speaker with e_ji left out (Eq. 8) or
    # included, and w, b learned or held at their initial values.
    centroid: Literal["exclusive", "inclusive"] = "exclusive"
    learn_scale: bool = True

    def __post_init__(self) -> None:
        if self.method == "te2e" and self.centroid != "exclusive":
            raise ConfigError("loss.centroid applies to GE2E only: TE2E's centroids never hold the utterance")


@dataclass
class SourceConfig:
    """One data source of a (MultiReader) training run: a prepared feature cache and its weight alpha_k."""

    cache: PathStr = ""
    weight: float = 1.0
    # Speakers to keep: official splits named "<corpus>.<split>" (read from $GE2E_DATA/splits), or paths to
    # text files of "<corpus>/<speaker>" keys. Empty keeps every speaker of the cache.
    splits: list[str] = field(default_factory=list)
    label: str = ""  # keep only utterances with this keyword label (text-dependent training)
    augmented: bool = True  # include augmented copies made by `ge2e prepare --augment`


@dataclass
class DataConfig:
    """N speakers x M utterances per batch, random crop of 140-180 frames per batch (paper, Sec. 3)."""

    sources: list[SourceConfig] = field(default_factory=list)
    speakers_per_batch: int = 64
    utterances_per_speaker: int = 10
    min_frames: int = 140
    max_frames: int = 180
    # Speakers with fewer utterances than this are left out; those with fewer than M (but at least this many)
    # are sampled with replacement, each draw getting its own random crop.
    min_utterances: int = 2
    # Utterances shorter than the crop: "concat" appends other utterances of the same speaker (text-independent),
    # "pad" left-pads with zeros (the mean of normalised features) so a keyword stays one keyword.
    short: Literal["concat", "pad"] = "concat"
    # SpecAugment-style masking of training crops (0: off): each crop gets one band of up to ``freq_mask`` mel
    # bands and one span of up to ``time_mask`` frames set to 0, the mean of mean-normalised features. A cheap
    # regulariser against memorising the few hundred training speakers; validation and inference never mask.
    freq_mask: int = 0
    time_mask: int = 0
    num_workers: int = 2


@dataclass
class ValConfig:
    """Periodic validation EER on held-out speakers (official dev splits), never on training batches."""

    sources: list[SourceConfig] = field(default_factory=list)
    every: int = 500
    trials: int = 4000


@dataclass
class OptimConfig:
    """SGD, lr 0.01 halved on a schedule, gradient-norm clip 3 (paper, Sec. 3)."""

    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    lr_halve_every: int = 30_000_000  # steps; the paper halves every 30M steps
    grad_clip: float = 3.0


@dataclass
class TrainConfig:
    """A full training run: the resolved copy is written next to the checkpoints."""

    out_dir: PathStr = "exp/run"
    preset: str = "small"
    model: ModelConfig | None = None  # overrides the preset when given
    # The one front end of the run: every training and validation cache must have been prepared with it
    # (`ge2e prepare --config`), and the trained model embeds audio with it.
    audio: AudioConfig = field(default_factory=AudioConfig)
    # How the trained model embeds whole utterances; stored in its checkpoints. None: windows as long as the
    # middle of the training crop range (160 frames for the paper's 140-180 crops, 80 for 80-frame keyword
    # segments), 50% overlap, so a model embeds audio the way it was trained.
    inference: InferenceConfig | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    val: ValConfig = field(default_factory=ValConfig)
    steps: int = 10_000
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast on CUDA and on CPUs with native bf16 (train.native_bf16_cpu)
    # CPU threads for the model (0: PyTorch's default, one per core). One thread leaves the other cores free
    # and is not slower per core for these small LSTMs.
    threads: int = 0
    # A model checkpoint whose weights start a run that has no last.pt yet (warm restart, fine-tuning): its model
    # and audio configs must match this run's.
    init: PathStr = ""
    # Stop after this many seconds of the training process's CPU time (0: no limit; ``steps`` still caps the
    # run). Counted over the training steps only, not validation, and carried across resumes, so that runs
    # compared at an equal compute budget get the same CPU time whatever else shares the machine.
    cpu_budget_s: float = 0.0


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a YAML mapping, recursively, rejecting unknown keys and mistyped values."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    types = _field_types(cls)
    unknown = sorted(set(data) - set(types))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    return cls(**{name: _convert(types[name], value, f"{where}.{name}") for name, value in data.items()})


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """Field name -> its annotation as a type (this module's annotations are strings, see __future__)."""
    return get_type_hints(cls, include_extras=True)


def _convert(annotation: Any, value: Any, where: str) -> Any:
    """``value`` checked against ``annotation`` (and, for floats, converted); ConfigError naming ``where``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:  # Path: a string naming a file or folder
        if not isinstance(value, str) or "\0" in value or "\n" in value:
            raise ConfigError(f"{where}: expected a file or folder path, got {value!r}")
        return value
    if origin is Literal:
        if not any(value == arg and type(value) is type(arg) for arg in args):
            raise ConfigError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (Union, UnionType):  # the configs only use "X | None"
        if value is None and type(None) in args:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, where)  # type: ignore[arg-type]
    return _convert_scalar(annotation, value, where)


def _convert_scalar(annotation: Any, value: Any, where: str) -> Any:
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        # PyYAML (YAML 1.1) reads 1e-3 as a string; a number written that way is still a number
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if annotation is str and not isinstance(value, str):
        # YAML reads bare yes/no/on/off as booleans: a keyword label "no" must be quoted.
        raise ConfigError(f"{where}: expected a string, got {value!r} (quote it in YAML)")
    return value


def load_config(path: str | Path, cls: type = TrainConfig, overlays: Sequence[str | Path] = ()) -> Any:
    """Read a YAML file into ``cls`` (default :class:`TrainConfig`), with each overlay file's keys laid over it
    in order (mappings merged key by key, anything else replaced): a recipe's round is its base config plus an
    overlay of what the round changes."""
    data = _read_yaml(path)
    for overlay in overlays:
        data = _merge(data, _read_yaml(overlay))
    where = " + ".join(map(str, [path, *overlays]))
    return _build(cls, data, where)


def _read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__}")
    return data or {}


def _merge(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both else value
    return merged


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Set dotted keys from ``key.sub=value`` strings (values parsed as YAML), e.g. ``data.num_workers=0``."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected key=value")
        *parents, name = key.split(".")
        target = config
        for part in parents:
            target = getattr(target, part, None)
            if target is None or not dataclasses.is_dataclass(target):
                raise ConfigError(f"override {item!r}: {part!r} is not a config section")
        types = _field_types(type(target))
        if name not in types:
            raise ConfigError(f"override {item!r}: unknown key {name!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: {key}: value is not valid YAML") from None
        setattr(target, name, _convert(types[name], value, key))
    return config


def to_dict(config: Any) -> dict:
    """Plain-data form of a config dataclass (for YAML and checkpoints)."""
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> None:
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    atomic_write(path, lambda f: f.write(text), "w")

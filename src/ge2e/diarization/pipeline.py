"""Who spoke when: VAD -> sliding-window d-vectors over the speech -> clustering -> resegmentation -> turns.

Follows Wang et al., "Speaker Diarization with LSTM" (ICASSP 2018): d-vectors of short, overlapping windows of
speech, clustered into speakers (:mod:`ge2e.diarization.clustering`: how the number of speakers is found).

Windowing (:class:`DiarizationConfig`): the non-speech frames are dropped, and windows of ``window_s`` (1.6 s,
the 160 frames the encoder was trained on) slide over the remaining speech every ``step_s`` (0.4 s, the paper's
400 ms segment limit), one d-vector each. Every speech frame takes the speaker of the window whose centre is
nearest, so turns are resolved to ``step_s`` while each d-vector still sees enough speech to be reliable.
Each window has its own mean subtracted (``window_mean``), as the encoder saw per-utterance normalised crops
in training.

Clustering units (:func:`speech_segments`): by default the speakers are clustered over speech *segments*
rather than single windows: the VAD speech regions (in a conversation turns are mostly separated by pauses, so
a region is mostly one speaker), long ones cut into pieces of at most ``segment_s``. A segment's d-vector joins
two scales: the d-vector of the segment's own frames (only its speaker, but often under a second of speech) and
the normalise-average of the 1.6 s windows centred in it (more speech, but reaching into the neighbouring
segments, which at a turn change belong to the other speaker). The clustering sees fewer, more reliable points;
the segments are then resegmented in time order (:mod:`ge2e.diarization.resegment`), and every frame takes its
segment's speaker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ge2e.config import InferenceConfig
from ge2e.diarization.clustering import Tuning, cluster, tuned
from ge2e.diarization.resegment import resegment
from ge2e.diarization.rttm import Segment
from ge2e.errors import AudioTooShort, Ge2eError, NoSpeechError
from ge2e.inference import Encoder, Inference, embed_frames, embed_mels, normalize_average, window_starts, windows

logger = logging.getLogger(__name__)

DEFAULT_MAX_SPEAKERS = 10
SPEAKER_FORMAT = "SPEAKER_{:02d}"  # pyannote's naming, familiar to users of its RTTM files


@dataclass
class DiarizationConfig:
    """Sliding d-vector windows over the speech (the front end itself is the model's ``AudioConfig``).

    Attributes:
        window_s: window length in seconds; the encoder was trained on 1.4-1.8 s crops.
        step_s: hop between windows in seconds; also the time resolution of the speaker labels.
        min_duration_s: no speaker turn shorter than this (see :func:`smooth`); 0 keeps every turn.
        window_mean: subtract each window's own mean log-mel frame (the per-utterance normalisation the
            encoder was trained with; dev DER 16.8% instead of 24.7% with one mean over the recording, default
            method, 2-4 speakers); False subtracts the mean of all speech frames of the recording.
        segment_s: longest clustering segment in seconds (a VAD speech region is cut into equal pieces no longer
            than this, so that a speaker change without a pause can still be found); see
            :func:`speech_segments`.
    """

    window_s: float = 1.6
    step_s: float = 0.4
    min_duration_s: float = 0.25
    window_mean: bool = True
    segment_s: float = 3.0

    def __post_init__(self) -> None:
        if not 0 < self.step_s <= self.window_s:
            raise ValueError(f"need 0 < step_s <= window_s, got step_s={self.step_s}, window_s={self.window_s}")
        if self.min_duration_s < 0:
            raise ValueError(f"need min_duration_s >= 0, got {self.min_duration_s}")
        if self.segment_s <= 0:
            raise ValueError(f"need segment_s > 0, got {self.segment_s}")


@dataclass
class SpeechWindows:
    """d-vectors of the speech of one recording: sliding windows, and speech segments on their own frames.

    Attributes:
        name: how errors and logs name the recording.
        embeddings: ``(N, D)`` float32 unit-norm d-vectors, in time order.
        speech_frames: ``(F,)`` indices of the feature frames VAD calls speech, ascending.
        owner: ``(F,)`` index of the window (row of ``embeddings``) each speech frame takes its speaker from.
        frame_s: hop between feature frames in seconds.
        offset_s: centre of feature frame 0 in seconds.
        duration_s: length of the recording in seconds.
        frame_segment: ``(F,)`` speech segment of each speech frame (:func:`cut_segments`), ascending.
        segment_embeddings: ``(S, D)`` float32 unit-norm d-vector of each segment's own frames.
    """

    name: str
    embeddings: np.ndarray
    speech_frames: np.ndarray
    owner: np.ndarray
    frame_s: float
    offset_s: float
    duration_s: float
    frame_segment: np.ndarray
    segment_embeddings: np.ndarray

    @property
    def speech_s(self) -> float:
        """Seconds of speech found by VAD."""
        return len(self.speech_frames) * self.frame_s


def window_config(cfg: DiarizationConfig, frame_s: float, batch_windows: int) -> InferenceConfig:
    """The sliding windows of ``cfg`` in frames of ``frame_s`` seconds, for :func:`ge2e.inference.windows`."""
    size = max(1, round(cfg.window_s / frame_s))
    step = max(1, round(cfg.step_s / frame_s))
    return InferenceConfig(window_frames=size, overlap=1.0 - step / size, batch_windows=batch_windows)


def cut_segments(speech_frames: np.ndarray, frame_s: float, segment_s: float) -> np.ndarray:
    """Speech segments: ``(F,)`` ascending feature-frame indices -> ``(F,)`` segment index of each frame.

    A segment is a VAD speech region (consecutive frames), cut into equal pieces of at most ``segment_s`` seconds.
    """
    count = len(speech_frames)
    breaks = np.flatnonzero(np.diff(speech_frames) != 1) + 1
    longest = max(1, round(segment_s / frame_s))
    sizes = []
    for first, end in zip(np.r_[0, breaks], np.r_[breaks, count], strict=True):
        edges = np.linspace(first, end, -(-(end - first) // longest) + 1).round().astype(int)
        sizes += np.diff(edges).tolist()
    return np.repeat(np.arange(len(sizes)), sizes)


def embed_speech(
    model: Encoder,
    source: str | Path | np.ndarray,
    sr: int | None = None,
    cfg: DiarizationConfig | None = None,
    name: str | None = None,
) -> SpeechWindows:
    """Front end + VAD + sliding-window d-vectors of one recording (file or ``(L,)`` array with ``sr``).

    The front end is the model's ``AudioConfig`` applied to the whole recording: loudness normalisation, log-mel
    frames, silero VAD; when ``mean_normalize`` is set, each window's own mean is subtracted (``cfg.window_mean``)
    or the mean over all speech frames.

    Each speech segment (:func:`cut_segments`) is also embedded on its own frames alone (:func:`embed_mels`,
    minus their own mean like a window), for :func:`speech_segments`.

    Raises:
        AudioError subclasses naming ``name`` (default: the path or ``<array>``): unreadable audio,
        ``NoSpeechError`` for silence or no speech, ``AudioTooShort`` under ``min_speech_ms`` of speech.
    """
    from ge2e.audio import input_name, load_speech, log_mel

    cfg = cfg or DiarizationConfig()
    audio = model.audio
    name = input_name(source, name)
    wav, mask = load_speech(source, sr, audio, name)
    if len(wav) < audio.win_length:
        raise AudioTooShort(name, f"{1000 * len(wav) / audio.sample_rate:.0f} ms of audio, too short for one frame")
    feats = log_mel(torch.from_numpy(wav), audio)  # (T, n_mels)
    centres = np.arange(feats.shape[0]) * audio.hop_length + audio.win_length // 2
    speech_frames = np.flatnonzero(mask[centres])
    frame_s = audio.hop_ms / 1000
    if len(speech_frames) == 0:
        raise NoSpeechError(name, f"no speech found by VAD (threshold {audio.vad_threshold})")
    if len(speech_frames) * frame_s * 1000 < audio.min_speech_ms:
        raise AudioTooShort(
            name, f"{len(speech_frames) * frame_s * 1000:.0f} ms of speech, need {audio.min_speech_ms:.0f} ms"
        )
    speech = feats[torch.from_numpy(speech_frames)]
    window_mean = audio.mean_normalize and cfg.window_mean
    if audio.mean_normalize and not cfg.window_mean:
        speech = speech - speech.mean(dim=0, keepdim=True)

    icfg = window_config(cfg, frame_s, model.inference.batch_windows)
    cut = windows(speech, icfg)  # (N, min(F, size), n_mels)
    if window_mean:
        cut = cut - cut.mean(dim=1, keepdim=True)
    embeddings = embed_frames(model, cut)
    frame_segment = cut_segments(speech_frames, frame_s, cfg.segment_s)
    pieces = speech.split(np.bincount(frame_segment).tolist())
    if window_mean:
        pieces = [piece - piece.mean(dim=0, keepdim=True) for piece in pieces]
    starts = np.asarray(window_starts(len(speech_frames), icfg), dtype=np.float64)
    window_centres = starts + cut.shape[1] / 2
    # each speech frame belongs to the window with the nearest centre: cut between consecutive centres
    owner = np.searchsorted((window_centres[1:] + window_centres[:-1]) / 2, np.arange(len(speech_frames)) + 0.5)
    return SpeechWindows(
        name=name,
        embeddings=embeddings.float().cpu().numpy(),
        speech_frames=speech_frames,
        owner=owner,
        frame_s=frame_s,
        offset_s=audio.win_length / 2 / audio.sample_rate,
        duration_s=len(wav) / audio.sample_rate,
        frame_segment=frame_segment,
        segment_embeddings=embed_mels(model, pieces).numpy(),
    )


@dataclass
class SpeechSegments:
    """Clustering units of one recording (:func:`speech_segments`).

    Attributes:
        frame_segment: ``(F,)`` segment index of every speech frame (segments are runs of frames, in time order).
        embeddings: ``(S, D)`` float32 unit-norm d-vector of each segment.
        durations: ``(S,)`` seconds of speech in each segment.
    """

    frame_segment: np.ndarray
    embeddings: np.ndarray
    durations: np.ndarray


def windows_around(speech: SpeechWindows, cfg: DiarizationConfig | None = None) -> np.ndarray:
    """``(S, D)`` float64: per segment, the normalise-average of the window d-vectors centred in it (a segment too
    short to hold a window centre takes the window that owns its middle frame). ``cfg`` must be the windowing that
    made ``speech``."""
    cfg = cfg or DiarizationConfig()
    count = len(speech.speech_frames)
    icfg = window_config(cfg, speech.frame_s, 1)
    starts = np.asarray(window_starts(count, icfg), dtype=np.float64)
    if len(starts) != len(speech.embeddings):
        raise ValueError(f"{len(speech.embeddings)} d-vectors but the windowing gives {len(starts)} windows")
    frame_segment = speech.frame_segment
    segments = len(speech.segment_embeddings)
    centres = starts + min(icfg.window_frames, count) / 2
    window_segment = frame_segment[np.minimum(np.floor(centres).astype(int), count - 1)]
    empty = np.setdiff1d(np.arange(segments), window_segment)
    middles = [int(np.flatnonzero(frame_segment == i).mean()) for i in empty]
    rows = np.r_[np.arange(len(starts)), speech.owner[middles]]
    groups = torch.from_numpy(np.r_[window_segment, empty])
    vectors = torch.from_numpy(np.asarray(speech.embeddings, dtype=np.float64)[rows])
    return normalize_average(vectors, groups, segments).numpy()


def speech_segments(speech: SpeechWindows, cfg: DiarizationConfig | None = None) -> SpeechSegments:
    """The clustering units of ``speech``: its segments (``speech.frame_segment``), each with a d-vector of two
    scales, the normalise-average of the segment's own d-vector and of :func:`windows_around` it.

    The segment's own frames hold one speaker but little speech; the 1.6 s windows centred in it see more but
    reach into the neighbours. Together they tell speakers apart better than either (measured by
    ``recipes/diarization/separability.py``); on the dev conversations (recipes/diarization/tune.py, 2-4 speakers)
    the default method counted the speakers right in 65% instead of 52% with the windows alone. ``cfg`` must be
    the windowing that made ``speech``.
    """
    segments = len(speech.segment_embeddings)
    around = torch.from_numpy(windows_around(speech, cfg))
    own = torch.from_numpy(np.asarray(speech.segment_embeddings, dtype=np.float64))
    both = torch.cat([around, own])
    embeddings = normalize_average(both, torch.arange(segments).repeat(2), segments).numpy().astype(np.float32)
    durations = np.bincount(speech.frame_segment, minlength=segments) * speech.frame_s
    return SpeechSegments(speech.frame_segment, embeddings, durations)


def to_segments(speech: SpeechWindows, labels: np.ndarray) -> list[Segment]:
    """Speaker turns from one cluster label per window: ``(N,)`` int -> segments in time order.

    Consecutive speech frames with the same label form one turn; a non-speech gap or a label change ends it.
    Speakers are named ``SPEAKER_00``, ``SPEAKER_01``, ... in order of first appearance.
    """
    labels = np.asarray(labels)
    if labels.shape != (len(speech.embeddings),):
        raise ValueError(f"expected {len(speech.embeddings)} labels, got shape {labels.shape}")
    return frame_turns(speech, labels[speech.owner])


def frame_turns(speech: SpeechWindows, frame_labels: np.ndarray) -> list[Segment]:
    """Speaker turns from one label per speech frame ``(F,)`` (see :func:`to_segments`)."""
    frame_labels = np.asarray(frame_labels)
    if frame_labels.shape != speech.speech_frames.shape:
        raise ValueError(f"expected {len(speech.speech_frames)} frame labels, got shape {frame_labels.shape}")
    frames = speech.speech_frames
    breaks = np.flatnonzero((np.diff(frames) != 1) | (np.diff(frame_labels) != 0)) + 1
    names: dict[int, str] = {}
    segments = []
    half = speech.frame_s / 2
    for first, last in zip(np.r_[0, breaks], np.r_[breaks, len(frames)] - 1, strict=True):
        label = int(frame_labels[first])
        speaker = names.setdefault(label, SPEAKER_FORMAT.format(len(names)))
        start = max(0.0, speech.offset_s + frames[first] * speech.frame_s - half)
        end = min(speech.duration_s, speech.offset_s + frames[last] * speech.frame_s + half)
        segments.append(Segment(round(float(start), 3), round(float(end), 3), speaker))
    return segments


def smooth(segments: list[Segment], min_duration_s: float, gap_s: float = 0.0) -> list[Segment]:
    """Turns a listener would accept: no turn shorter than ``min_duration_s``, same-speaker neighbours merged.

    Repeatedly the shortest turn under the minimum goes to the speaker of the longer of its neighbours within
    ``gap_s`` (a label flicker inside someone's speech), or is dropped when it has none (a VAD blip between
    pauses); then turns of one speaker that touch or are at most ``gap_s`` apart become one.
    """
    turns = sorted(segments, key=lambda s: s.start)

    def merged(items: list[Segment]) -> list[Segment]:
        out: list[Segment] = []
        for seg in items:
            if out and out[-1].speaker == seg.speaker and seg.start - out[-1].end <= gap_s + 1e-9:
                out[-1] = Segment(out[-1].start, max(out[-1].end, seg.end), seg.speaker)
            else:
                out.append(seg)
        return out

    turns = merged(turns)
    while turns:
        i = min(range(len(turns)), key=lambda j: turns[j].duration)
        if turns[i].duration >= min_duration_s - 1e-9:
            break
        neighbours = [
            turns[j]
            for j in (i - 1, i + 1)
            if 0 <= j < len(turns) and max(turns[j].start - turns[i].end, turns[i].start - turns[j].end) <= gap_s + 1e-9
        ]
        if neighbours:
            speaker = max(neighbours, key=lambda s: s.duration).speaker
            turns[i] = Segment(turns[i].start, turns[i].end, speaker)
        else:
            del turns[i]
        turns = merged(turns)
    return turns


def speaker_range(num_speakers: int | None, min_speakers: int | None, max_speakers: int | None) -> tuple[int, int]:
    """``(lo, hi)`` number of speakers to look for; ``num_speakers`` fixes both. Raises Ge2eError if invalid."""
    if num_speakers is not None:
        if min_speakers is not None or max_speakers is not None:
            raise Ge2eError("give either the number of speakers or a min/max range, not both")
        if num_speakers < 1:
            raise Ge2eError(f"number of speakers must be >= 1, got {num_speakers}")
        return num_speakers, num_speakers
    lo = 1 if min_speakers is None else min_speakers
    hi = DEFAULT_MAX_SPEAKERS if max_speakers is None else max_speakers
    if not 1 <= lo <= hi:
        raise Ge2eError(f"need 1 <= min speakers <= max speakers, got {lo} and {hi}")
    return lo, hi


def diarize_speech(
    speech: SpeechWindows,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    method: str | None = None,
    cfg: DiarizationConfig | None = None,
    tuning: Tuning | None = None,
) -> list[Segment]:
    """Cluster the windows of :func:`embed_speech` and return the smoothed speaker turns (see :func:`diarize`).

    With ``tuning.segments`` the clustering runs over :func:`speech_segments`
    (each weighted by its seconds of speech), the segments are resegmented (:mod:`ge2e.diarization.resegment`)
    and every frame takes its segment's speaker; otherwise over the windows.

    ``tuning``: the model's tuned clustering settings (:func:`~ge2e.diarization.clustering.tuned`); default: the
    untuned defaults.
    """
    cfg = cfg or DiarizationConfig()
    lo, hi = speaker_range(num_speakers, min_speakers, max_speakers)
    n = len(speech.embeddings)
    if lo > n:
        raise AudioTooShort(
            speech.name, f"{speech.speech_s:.1f} s of speech gives {n} d-vector windows, too few for {lo} speakers"
        )
    tuning = tuning or Tuning()
    units = speech_segments(speech, cfg) if tuning.segments else None
    if units is not None and len(units.embeddings) >= lo:
        # speakers clustered over speech segments; too few segments for the speakers asked for: over windows
        count = len(units.embeddings)
        labels = cluster(units.embeddings, lo, min(hi, count), method, tuning=tuning, weights=units.durations)
        labels = resegment(units.embeddings, units.durations, labels, tuning.resegment_sharpness, tuning.resegment_stay)
        turns = frame_turns(speech, labels[units.frame_segment])
    else:
        overlap = max(1, round(cfg.window_s / cfg.step_s))
        steps = np.full(n, cfg.step_s)
        labels = cluster(speech.embeddings, lo, min(hi, n), method, overlap, tuning, weights=steps)
        turns = to_segments(speech, labels)
    return smooth(turns, cfg.min_duration_s)


def diarize(
    source: str | Path | np.ndarray,
    model: Encoder | None = None,
    *,
    sr: int | None = None,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    method: str | None = None,
    cfg: DiarizationConfig | None = None,
) -> list[Segment]:
    """Who spoke when in one recording -> speaker turns in time order (seconds, ``SPEAKER_00``, ...).

    Args:
        source: an audio file, or ``(L,)`` samples with their rate ``sr`` in Hz.
        model: an :class:`~ge2e.inference.Encoder`; default: :func:`load_encoder` (the bundled model).
        num_speakers: the number of speakers when known; otherwise it is estimated within
            ``[min_speakers, max_speakers]`` (default 1 to 10).
        method: how speakers are clustered and counted, one of ``nme-sc``, ``eigengap``, ``ahc``, ``kmeans``,
            ``centroid``, ``silhouette`` (:mod:`ge2e.diarization.clustering`); default: the method chosen on dev
            for ``model`` (its tuned settings; the untuned defaults for a model that has none).
        cfg: windowing and the minimum turn duration (default 0.25 s).

    Raises:
        AudioError subclasses for unreadable, silent or too short audio; Ge2eError for an invalid speaker range.

    >>> segments = diarize("meeting.wav", num_speakers=2)  # doctest: +SKIP
    >>> segments[0]  # doctest: +SKIP
    Segment(start=0.315, end=4.125, speaker='SPEAKER_00')
    """
    speaker_range(num_speakers, min_speakers, max_speakers)  # fail before the expensive part
    model = model if model is not None else load_encoder()
    speech = embed_speech(model, source, sr, cfg)
    return diarize_speech(speech, num_speakers, min_speakers, max_speakers, method, cfg, tuned(model))


def load_encoder(path: str | Path | None = None, device: str = "cpu") -> Inference:
    """A speaker encoder from a model file (checkpoint or exported), or the bundled model when None."""
    from ge2e.pretrained import load_model

    return load_model(path, device)

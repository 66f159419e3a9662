"""Synthetic conversations assembled from real single-speaker recordings, with exact reference turns.

A turn is a contiguous excerpt of one source recording, cut at VAD pauses; turns of different speakers are
laid end to end with optional pauses, overlaps and background noise. The reference marks the silero-VAD
speech regions of each clean excerpt (pauses inside a turn are not speech), at their place in the mix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ge2e.diarization.rttm import Segment
from ge2e.errors import Ge2eError

SAMPLE_RATE = 16_000
EDGE_S = 0.5  # silence before the first and after the last turn


@dataclass
class Source:
    """One clean recording of one speaker: ``(L,)`` float32 samples and its VAD speech regions in samples."""

    speaker: str
    name: str
    wav: np.ndarray
    regions: list[tuple[int, int]]


@dataclass
class ConversationConfig:
    """How conversations are laid out (all durations in seconds).

    Attributes:
        turns_per_speaker: turns = this x the number of speakers (x 2 for one speaker, a monologue as long as a
            dialogue); every speaker talks at least once.
        turn_s: (min, max) target turn length; a turn is whole VAD regions, so it may run a little longer.
        pause_s: (min, max) silence between turns; (0, 0) for none.
        overlap_prob: chance that a turn starts before the previous one ends.
        overlap_s: (min, max) overlap; capped at half the previous turn.
        snr_db: (min, max) speech-to-noise ratio of coloured background noise; None for clean audio.
    """

    turns_per_speaker: int = 4
    turn_s: tuple[float, float] = (1.5, 6.0)
    pause_s: tuple[float, float] = (0.2, 1.0)
    overlap_prob: float = 0.0
    overlap_s: tuple[float, float] = (0.3, 1.0)
    snr_db: tuple[float, float] | None = None


@dataclass
class Conversation:
    """A mixed conversation: ``(L,)`` float32 samples at 16 kHz, reference turns, and where each turn came from."""

    wav: np.ndarray
    reference: list[Segment]
    turns: list[dict] = field(default_factory=list)


def load_sources(paths_by_speaker: Mapping[str, Sequence[str]], threshold: float = 0.5) -> list[Source]:
    """Read and VAD every file once (16 kHz mono); files without speech are left out."""
    from ge2e.audio import load_audio, speech_mask

    sources = []
    for speaker, paths in paths_by_speaker.items():
        for path in paths:
            wav = load_audio(path, target_sr=SAMPLE_RATE)
            mask = speech_mask(wav, SAMPLE_RATE, threshold, pad_ms=0.0)
            edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
            regions = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
            if regions:
                sources.append(Source(speaker, str(path), wav, regions))
    return sources


def join_sources(sources: Sequence[Source], gap_s: float = 0.3) -> list[Source]:
    """One source per speaker: their recordings end to end with ``gap_s`` of silence between them.

    Corpora of isolated words or short commands (Speech Commands, DSPSpeech-20) have recordings shorter than a
    conversational turn; joined, a turn can run over several of them like a speaker pausing between phrases.
    """
    gap = np.zeros(round(gap_s * SAMPLE_RATE), dtype=np.float32)
    joined = []
    for speaker in dict.fromkeys(s.speaker for s in sources):
        parts, regions, offset = [], [], 0
        for source in (s for s in sources if s.speaker == speaker):
            regions += [(a + offset, b + offset) for a, b in source.regions]
            parts += [source.wav, gap]
            offset += len(source.wav) + len(gap)
        count = len(parts) // 2
        joined.append(Source(speaker, f"{speaker} ({count} recordings)", np.concatenate(parts), regions))
    return joined


def speech_seconds(source: Source) -> float:
    """Seconds of VAD speech in a source."""
    return sum(b - a for a, b in source.regions) / SAMPLE_RATE


def _pick_turn(
    sources: list[Source], used: set[tuple[int, int]], target: float, rng: np.random.Generator
) -> tuple[int, list[int]]:
    """A random source and a run of its consecutive, not yet used VAD regions lasting about ``target`` s."""
    starts = [(s, r) for s in range(len(sources)) for r in range(len(sources[s].regions)) if (s, r) not in used]
    if not starts:
        raise Ge2eError(f"speaker {sources[0].speaker}: not enough speech for another turn")
    s, r = starts[int(rng.integers(len(starts)))]
    regions = sources[s].regions
    chosen = [r]
    while regions[r][1] - regions[chosen[0]][0] < target * SAMPLE_RATE and r + 1 < len(regions):
        if (s, r + 1) in used:
            break
        r += 1
        chosen.append(r)
    return s, chosen


def _turn_order(speakers: Sequence[str], turns: int, rng: np.random.Generator) -> list[str]:
    """Every speaker once in random order, then random speakers, never the same one twice in a row (unless there
    is only one)."""
    if len(speakers) == 1:
        return [speakers[0]] * turns
    order = [speakers[i] for i in rng.permutation(len(speakers))]
    while len(order) < turns:
        others = [s for s in speakers if s != order[-1]]
        order.append(others[int(rng.integers(len(others)))])
    return order


def make_conversation(
    sources: Sequence[Source], speakers: Sequence[str], cfg: ConversationConfig, rng: np.random.Generator
) -> Conversation:
    """Mix one conversation of ``speakers`` from their ``sources`` -> audio + reference turns. With one speaker it
    is a monologue as long as a two-speaker conversation (the length must not give the count away), with pauses
    between its turns: a speaker does not overlap themselves."""
    from ge2e.data.augment import coloured_noise

    if not speakers:
        raise Ge2eError("a conversation needs at least one speaker")
    by_speaker = {spk: [s for s in sources if s.speaker == spk] for spk in speakers}
    used: dict[str, set[tuple[int, int]]] = {spk: set() for spk in speakers}
    pieces: list[tuple[int, np.ndarray]] = []  # (start sample in the mix, excerpt)
    reference, turns = [], []
    cursor = round(EDGE_S * SAMPLE_RATE)  # where the previous turn ends
    previous_len = 0
    for i, speaker in enumerate(_turn_order(speakers, cfg.turns_per_speaker * max(len(speakers), 2), rng)):
        s, regions = _pick_turn(by_speaker[speaker], used[speaker], float(rng.uniform(*cfg.turn_s)), rng)
        used[speaker].update((s, r) for r in regions)
        source = by_speaker[speaker][s]
        lo, hi = source.regions[regions[0]][0], source.regions[regions[-1]][1]
        if i > 0 and len(speakers) > 1 and rng.random() < cfg.overlap_prob:
            start = cursor - min(round(rng.uniform(*cfg.overlap_s) * SAMPLE_RATE), previous_len // 2)
        else:
            start = cursor + (round(rng.uniform(*cfg.pause_s) * SAMPLE_RATE) if i > 0 else 0)
        pieces.append((start, source.wav[lo:hi]))
        for r in regions:
            a, b = source.regions[r]
            reference.append(Segment((start + a - lo) / SAMPLE_RATE, (start + b - lo) / SAMPLE_RATE, speaker))
        turns.append(
            {
                "speaker": speaker,
                "source": source.name,
                "source_start_s": lo / SAMPLE_RATE,
                "start_s": start / SAMPLE_RATE,
                "end_s": (start + hi - lo) / SAMPLE_RATE,
            }
        )
        cursor = max(cursor, start + hi - lo)
        previous_len = hi - lo
    wav = np.zeros(cursor + round(EDGE_S * SAMPLE_RATE), dtype=np.float32)
    for start, excerpt in pieces:
        wav[start : start + len(excerpt)] += excerpt
    if cfg.snr_db is not None:
        speech = np.zeros(len(wav), dtype=bool)
        for seg in reference:
            speech[round(seg.start * SAMPLE_RATE) : round(seg.end * SAMPLE_RATE)] = True
        noise = coloured_noise(len(wav), float(rng.uniform(0.0, 2.0)), rng)  # white (0) to brown (2)
        snr = float(rng.uniform(*cfg.snr_db))
        # SNR against the power of the speech regions, not the whole mix (which pauses would lower)
        wav += noise * np.float32(np.sqrt(np.mean(wav[speech] ** 2) / 10 ** (snr / 10)))
    peak = float(np.max(np.abs(wav)))
    if peak > 0.99:  # overlaps and noise can clip 16-bit files
        wav *= np.float32(0.99 / peak)
    return Conversation(wav, sorted(reference, key=lambda seg: seg.start), turns)

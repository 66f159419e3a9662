"""Build a diarization set: synthetic conversations of the DEV or TEST speakers of four shared corpora.

    python recipes/diarization/make_eval_set.py --split dev --out exp/diarization/dev
    python recipes/diarization/make_eval_set.py --split test --out exp/diarization/test --per-count 32
    python recipes/diarization/make_eval_set.py --split dev --per-count 16 --snr-db 100 100 \
        --out exp/diarization/dev-noise-free   # the same conversations without their noise

Speakers come from the official ``<corpus>.<split>`` lists of speechocean762 (read L2 English), wuw2 (8 kHz
telephone calls), DSPSpeech-20 (isolated words) and Speech Commands (1 s keywords); LibriSpeech has no dev
speakers. Each speaker's recordings are joined with 0.3 s pauses (``simulate.join_sources``) so a turn can run
over several short recordings; speakers with less than ``MIN_SPEECH_S`` of speech are left out. A conversation
draws its speakers from the pooled corpora, so it can mix them.

Writes ``<out>/wav/<uri>.wav`` (16 kHz, 16-bit), ``<out>/ref/<uri>.rttm`` and ``<out>/manifest.json``.
Conversation ``k<K>_<i>`` has K speakers and its own seed ``(seed, K, i)``, so a set is reproducible; another
``--snr-db`` draws the same random numbers, so at 100 dB it gives the same conversations with no audible noise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ge2e.data.readers import load_split, read_corpus
from ge2e.diarization.rttm import write_rttm
from ge2e.diarization.simulate import (
    SAMPLE_RATE,
    ConversationConfig,
    Source,
    join_sources,
    load_sources,
    make_conversation,
    speech_seconds,
)

REPO = Path(__file__).resolve().parents[2]
CORPORA = {  # folder: reader layout
    "speechocean762": "speechocean762",
    "wuw2": "wuw2",
    "DSPSpeech-20": "dspspeech",
    "speech_commands_v0.02_test": "speech_commands",
}
FILES_PER_SPEAKER = 30  # DSPSpeech-20 has 400 words per speaker; 30 give enough speech for 4 turns
MIN_SPEECH_S = 15.0  # 4 turns of 1.5-4 s must fit without reusing speech
SPEAKER_COUNTS = tuple(range(1, 9))  # one-speaker recordings too: the count must be able to say one
# 16 left a 2-4 speaker count accuracy that moved 10 points between settings tied on dev (48 conversations)
PER_COUNT = 32
# pauses, 10% overlapping turns and background noise, as the issue asks; kept modest so a set is 30-130 s each
CONVERSATION = ConversationConfig(
    turns_per_speaker=4,
    turn_s=(1.5, 4.0),
    pause_s=(0.2, 1.0),
    overlap_prob=0.1,
    overlap_s=(0.3, 0.8),
    snr_db=(10.0, 25.0),
)


def data_root() -> Path:
    return Path(os.environ.get("GE2E_DATA", REPO.parent / "shared" / "data"))


def split_files(root: Path, split: str, seed: int = 0) -> dict[str, tuple[list[str], list[str]]]:
    """``{<corpus>/<speaker>: (every file, the files drawn for the conversations)}`` of the speakers of ``split``."""
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[list[str], list[str]]] = {}
    for corpus, layout in CORPORA.items():
        keep = load_split(root, corpus, split)
        files: dict[str, list[str]] = {}
        for utt in read_corpus(root / corpus, layout):
            if utt.speaker in keep:
                files.setdefault(f"{corpus}/{utt.speaker}", []).append(utt.path)
        for speaker, paths in sorted(files.items()):
            chosen = sorted(rng.choice(paths, size=min(len(paths), FILES_PER_SPEAKER), replace=False).tolist())
            out[speaker] = (paths, chosen)
    return out


def split_sources(root: Path, split: str, seed: int = 0) -> list[Source]:
    """One joined source per speaker of ``split`` (named ``<corpus>/<speaker>``) with enough speech."""
    sources: list[Source] = []
    for speaker, (_, chosen) in split_files(root, split, seed).items():
        sources += [s for s in join_sources(load_sources({speaker: chosen})) if speech_seconds(s) >= MIN_SPEECH_S]
    return sources


def write_wav(path: Path, wav: np.ndarray) -> None:
    """16-bit PCM WAV, written atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, wav, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(
    out: Path, split: str, counts: list[int], per_count: int, cfg: ConversationConfig, seed: int, sources: list[Source]
) -> dict:
    """Generate the set from the ``sources`` of ``split``; returns the manifest (also ``<out>/manifest.json``)."""
    speakers = sorted({s.speaker for s in sources})
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "ref").mkdir(parents=True, exist_ok=True)
    entries = []
    speech = {spk: sum(speech_seconds(s) for s in sources if s.speaker == spk) for spk in speakers}
    # a monologue is as long as a two-speaker conversation (simulate.make_conversation), so twice the speech
    monologue = [spk for spk in speakers if speech[spk] >= 2 * MIN_SPEECH_S]
    for k in counts:
        pool = monologue if k == 1 else speakers
        if k > len(pool):
            raise SystemExit(f"only {len(pool)} {split} speakers, cannot make {k}-speaker conversations")
        for i in range(per_count):
            rng = np.random.default_rng([seed, k, i])
            chosen = sorted(rng.choice(pool, size=k, replace=False).tolist())
            conv = make_conversation(sources, chosen, cfg, rng)
            uri = f"k{k}_{i:02d}"
            write_wav(out / "wav" / f"{uri}.wav", conv.wav)
            write_rttm({uri: conv.reference}, out / "ref" / f"{uri}.rttm")
            entries.append(
                {"uri": uri, "speakers": chosen, "duration_s": len(conv.wav) / SAMPLE_RATE, "turns": conv.turns}
            )
            print(
                f"{split}/{uri}: {k} speakers, {len(conv.turns)} turns, {len(conv.wav) / SAMPLE_RATE:.1f} s", flush=True
            )
    manifest = {
        "split": split,
        "corpora": list(CORPORA),
        "speakers_available": len(speakers),
        "seed": seed,
        "config": asdict(cfg),
        "conversations": entries,
    }
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(out / "manifest.json")
    return manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--split", choices=("train", "dev", "test"), required=True, help="official speaker split")
    p.add_argument("--out", type=Path, help="output folder (default exp/diarization/<split>)")
    p.add_argument("--speakers", type=int, nargs="+", default=list(SPEAKER_COUNTS), help="speaker counts (1-8)")
    p.add_argument("--per-count", type=int, default=PER_COUNT, help=f"conversations per count (default {PER_COUNT})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--snr-db",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=CONVERSATION.snr_db,
        help="background noise SNR range in dB (default %(default)s)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    out = args.out or REPO / "exp" / "diarization" / args.split
    sources = split_sources(data_root(), args.split, args.seed)
    cfg = replace(CONVERSATION, snr_db=tuple(args.snr_db))
    build(out, args.split, args.speakers, args.per_count, cfg, args.seed, sources)
    return 0


if __name__ == "__main__":
    sys.exit(main())

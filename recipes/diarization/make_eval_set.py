"""Build a diarization evaluation set: synthetic conversations of held-out LibriSpeech TEST speakers.

    python recipes/diarization/make_eval_set.py --out exp/diarization/clean
    python recipes/diarization/make_eval_set.py --out exp/diarization/noisy --overlap 0.2 --snr 5 15

Writes ``<out>/wav/<uri>.wav`` (16 kHz, 16-bit), ``<out>/ref/<uri>.rttm`` and ``<out>/manifest.json`` (settings
and, per conversation, its speakers and the source excerpt of every turn). Conversation ``k<K>_<i>`` has K
speakers and its own seed ``(seed, K, i)``, so a set is reproducible and growing ``--per-count`` keeps the
existing conversations. Speakers come from ``$GE2E_DATA/splits/LibriSpeech.test.txt`` only (never trained on).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ge2e.data.readers import load_split, read_corpus
from ge2e.diarization.rttm import write_rttm
from ge2e.diarization.simulate import SAMPLE_RATE, ConversationConfig, Source, load_sources, make_conversation

REPO = Path(__file__).resolve().parents[2]
CORPUS = "LibriSpeech"


def data_root() -> Path:
    return Path(os.environ.get("GE2E_DATA", REPO.parent / "shared" / "data"))


def test_speaker_files(root: Path) -> dict[str, list[str]]:
    """``{speaker: [paths]}`` of the official LibriSpeech test split."""
    keep = load_split(root, CORPUS, "test")
    files: dict[str, list[str]] = {}
    for utt in read_corpus(root / CORPUS, "librispeech"):
        if utt.speaker in keep:
            files.setdefault(utt.speaker, []).append(utt.path)
    return files


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
    out: Path, counts: list[int], per_count: int, cfg: ConversationConfig, seed: int, sources: list[Source]
) -> dict:
    """Generate the set from the test speakers' ``sources``; returns the manifest (also ``<out>/manifest.json``)."""
    speakers = sorted({s.speaker for s in sources})
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "ref").mkdir(parents=True, exist_ok=True)
    entries = []
    for k in counts:
        if k > len(speakers):
            raise SystemExit(f"only {len(speakers)} test speakers, cannot make {k}-speaker conversations")
        for i in range(per_count):
            rng = np.random.default_rng([seed, k, i])
            chosen = sorted(rng.choice(speakers, size=k, replace=False).tolist())
            conv = make_conversation(sources, chosen, cfg, rng)
            uri = f"k{k}_{i:02d}"
            write_wav(out / "wav" / f"{uri}.wav", conv.wav)
            write_rttm({uri: conv.reference}, out / "ref" / f"{uri}.rttm")
            entries.append(
                {"uri": uri, "speakers": chosen, "duration_s": len(conv.wav) / SAMPLE_RATE, "turns": conv.turns}
            )
            print(f"{uri}: {k} speakers, {len(conv.turns)} turns, {len(conv.wav) / SAMPLE_RATE:.1f} s", flush=True)
    manifest = {"corpus": f"{CORPUS}.test", "seed": seed, "config": asdict(cfg), "conversations": entries}
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(out / "manifest.json")
    return manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "exp" / "diarization" / "clean", help="output folder")
    p.add_argument("--speakers", type=int, nargs="+", default=[2, 3, 4, 5, 6], help="speaker counts (2-10)")
    p.add_argument("--per-count", type=int, default=10, help="conversations per speaker count (default 10)")
    p.add_argument("--turns-per-speaker", type=int, default=4, help="turns = this x speakers (default 4)")
    p.add_argument("--pause", type=float, nargs=2, default=[0.2, 1.0], metavar=("MIN", "MAX"), help="pause s")
    p.add_argument("--overlap", type=float, default=0.0, help="probability that a turn overlaps the previous")
    p.add_argument("--snr", type=float, nargs=2, metavar=("MIN", "MAX"), help="add coloured noise at this SNR dB")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    cfg = ConversationConfig(
        turns_per_speaker=args.turns_per_speaker,
        pause_s=tuple(args.pause),
        overlap_prob=args.overlap,
        snr_db=tuple(args.snr) if args.snr else None,
    )
    build(args.out, args.speakers, args.per_count, cfg, args.seed, load_sources(test_speaker_files(data_root())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

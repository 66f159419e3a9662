"""Embedding throughput on CPU: ge2e ``embed_files`` against Resemblyzer's ``embed_utterance``, same files, same run.

Throughput is seconds of audio (decoded file durations) per wall-clock second, for the whole path from file to
d-vector: decoding, resampling, volume normalisation, VAD, log-mel features and the encoder. Contenders:

- ``resemblyzer``: ``VoiceEncoder.embed_utterance(preprocess_wav(path))`` per file (webrtcvad, librosa mels,
  one batch of partial windows per utterance). Needs ``pip install 'ge2e[bench]'``.
- ``ge2e small`` / ``ge2e paper``: ``embed_files`` with a :class:`SpeakerEncoder` of that preset (the bundled
  model's weights when present, else random ones: the compute is the same).
- ``ge2e small, ONNX VAD``: as ``ge2e small`` with silero-vad's ONNX model instead of its TorchScript one, a
  proposed change to ``ge2e.audio._silero`` (``load_silero_vad(onnx=True)``), applied here by patching.
- ``ge2e small, ONNX int8``: the same plus the encoder exported with ``ge2e export --format onnx --int8`` and run
  by :class:`ge2e.export.OnnxEncoder`.

Contenders run interleaved (rotating order) for ``--repeats`` rounds per thread count; the table gives medians.
``--breakdown`` adds one pass timing each stage of ge2e's front end separately. Usage::

    nice -n 15 .venv/bin/python benchmarks/embed.py --split LibriSpeech.test --files 16 --threads 1 2
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import soundfile as sf
import torch

import ge2e.audio
from common import header, interleaved, machine, median, table, write_result
from ge2e.audio import load_audio, log_mel, normalize_volume, trim_silence
from ge2e.export import export, load_exported
from ge2e.inference import embed_files, embed_mels
from ge2e.model import SpeakerEncoder

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "ge2e" / "pretrained" / "ge2e_small.pt"


def split_files(data: Path, split: str, limit: int) -> list[Path]:
    """The first ``limit`` distinct files (sorted) of the official trial list ``trials/<split>.txt``."""
    lines = (data / "trials" / f"{split}.txt").read_text().splitlines()
    names = sorted({p for line in lines if line.strip() for p in line.split()[1:]})
    return [data / n for n in names[:limit]]


def small_encoder() -> SpeakerEncoder:
    return SpeakerEncoder.load(BUNDLED) if BUNDLED.exists() else SpeakerEncoder("small").eval()


@functools.cache
def silero_onnx() -> tuple[Any, Callable[..., Any]]:
    """silero-vad's ONNX model and its timestamp function (what ``ge2e.audio._silero`` returns for TorchScript)."""
    threads = torch.get_num_threads()
    from silero_vad import get_speech_timestamps, load_silero_vad

    torch.set_num_threads(threads)  # importing silero_vad sets it to 1
    return load_silero_vad(onnx=True), get_speech_timestamps


def with_onnx_vad(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with ``ge2e.audio`` using silero's ONNX model: the proposed one-line change, by patching."""

    def run() -> Any:
        original = ge2e.audio._silero
        ge2e.audio._silero = silero_onnx
        try:
            return fn()
        finally:
            ge2e.audio._silero = original

    return run


def contenders(files: list[Path], threads: int, workdir: Path) -> dict[str, Callable[[], Any]]:
    """name -> a function embedding every file once."""
    from resemblyzer import VoiceEncoder, preprocess_wav

    resemblyzer = VoiceEncoder("cpu", verbose=False)
    small, paper = small_encoder(), SpeakerEncoder("paper").eval()
    onnx_path = workdir / f"small-int8-{threads}.onnx"
    export(small, onnx_path, "onnx", int8=True)
    small_int8 = load_exported(onnx_path, threads=threads)

    def run_resemblyzer() -> list[Any]:
        return [resemblyzer.embed_utterance(preprocess_wav(f)) for f in files]

    def ours(model: Any) -> Callable[[], Any]:
        return lambda: embed_files(model, files, progress=False)

    return {
        "resemblyzer": run_resemblyzer,
        "ge2e small": ours(small),
        "ge2e paper": ours(paper),
        "ge2e small, ONNX VAD": with_onnx_vad(ours(small)),
        "ge2e small, ONNX VAD + ONNX int8": with_onnx_vad(ours(small_int8)),
    }


class _Replay:
    """Stands in for the silero model inside ``get_speech_timestamps``, returning precomputed probabilities."""

    def __init__(self, probs: torch.Tensor) -> None:
        self.probs = iter(probs.tolist())

    def reset_states(self) -> None:
        pass

    def __call__(self, chunk: torch.Tensor, sr: int) -> torch.Tensor:
        return torch.tensor(next(self.probs))


def batched_vad(wavs: list[Any], sr: int, threshold: float) -> list[list[dict[str, int]]]:
    """Speech timestamps of many waveforms with one silero call per 32 ms step for all of them (proposed).

    silero keeps one recurrent state per batch row, so running the files as rows of one zero-padded batch gives
    each file the probabilities it gets alone; silero's own hysteresis then runs on them unchanged.
    """
    model, get_speech_timestamps = silero_onnx()
    chunk = 512 if sr == 16_000 else 256
    batch = torch.zeros(len(wavs), max(len(w) for w in wavs))
    for row, w in enumerate(wavs):
        batch[row, : len(w)] = torch.from_numpy(w)
    probs = model.audio_forward(batch, sr)
    return [
        get_speech_timestamps(
            torch.from_numpy(w), _Replay(probs[row, : -(-len(w) // chunk)]), threshold=threshold,
            sampling_rate=sr, min_speech_duration_ms=ge2e.audio.VAD_MIN_REGION_MS, speech_pad_ms=0,
        )
        for row, w in enumerate(wavs)
    ]  # fmt: skip


def breakdown(files: list[Path], model: SpeakerEncoder) -> dict[str, float | int]:
    """Seconds spent in each stage of ge2e's path, one pass over ``files`` (VAD with both silero models, and
    batched across the files), and how many files' speech regions batched VAD reproduces exactly.
    """
    cfg = model.audio
    stages = ["decode + resample", "VAD (TorchScript)", "VAD (ONNX)", "VAD (ONNX, batched)", "log-mel", "encoder"]
    spent: dict[str, float | int] = dict.fromkeys(stages, 0.0)
    mels, wavs, stamps = [], [], []
    _, get_speech_timestamps = silero_onnx()
    for f in files:
        start = time.perf_counter()
        wav = normalize_volume(load_audio(f, target_sr=cfg.sample_rate), cfg.normalization, cfg.target_dbfs)
        spent["decode + resample"] += time.perf_counter() - start
        wavs.append(wav)
        start = time.perf_counter()
        trim_silence(wav, cfg.sample_rate, cfg.vad_threshold, cfg.vad_pad_ms)
        spent["VAD (TorchScript)"] += time.perf_counter() - start
        start = time.perf_counter()
        speech = with_onnx_vad(lambda w=wav: trim_silence(w, cfg.sample_rate, cfg.vad_threshold, cfg.vad_pad_ms))()
        spent["VAD (ONNX)"] += time.perf_counter() - start
        start = time.perf_counter()
        feats = log_mel(torch.from_numpy(speech), cfg)
        mels.append(feats - feats.mean(dim=0, keepdim=True))
        spent["log-mel"] += time.perf_counter() - start
        onnx_model = silero_onnx()[0]
        stamps.append(get_speech_timestamps(
            torch.from_numpy(wav), onnx_model, threshold=cfg.vad_threshold, sampling_rate=cfg.sample_rate,
            min_speech_duration_ms=ge2e.audio.VAD_MIN_REGION_MS, speech_pad_ms=0,
        ))  # fmt: skip
    start = time.perf_counter()
    batched = batched_vad(wavs, cfg.sample_rate, cfg.vad_threshold)
    spent["VAD (ONNX, batched)"] = time.perf_counter() - start
    start = time.perf_counter()
    embed_mels(model, mels, model.inference)
    spent["encoder"] = time.perf_counter() - start
    spent["batched VAD identical regions (files)"] = sum(a == b for a, b in zip(batched, stamps, strict=True))
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("GE2E_DATA", "../shared/data"))
    parser.add_argument("--split", default="LibriSpeech.test", help="trial list whose files are embedded")
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--breakdown", action="store_true", help="also time each front-end stage (1 pass)")
    parser.add_argument("--out", default="embed", help="results/<out>.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # deprecation notices of torch.jit / silero / librosa, not ours to act on
    files = split_files(Path(args.data), args.split, args.files)
    audio_s = sum(sf.info(f).duration for f in files)
    info = machine()
    print(header(f"Embedding throughput, {len(files)} files of {args.split} ({audio_s:.0f} s of audio)", info,
                 args.threads))  # fmt: skip
    print("throughput = seconds of audio per wall second (median of interleaved repeats); higher is better")

    rows, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in args.threads:
            torch.set_num_threads(threads)
            fns = contenders(files, threads, Path(tmp))
            torch.set_num_threads(threads)  # loading silero or resemblyzer may have changed it
            times = interleaved(fns, args.repeats, warmup=1)
            base = audio_s / median(times["resemblyzer"])
            for name, values in times.items():
                speed = audio_s / median(values)
                rows.append([threads, name, f"{speed:.1f}", f"{speed / base:.2f}x"])
            records.append({"threads": threads, "times_s": times})
            if args.breakdown:
                stages = breakdown(files, small_encoder())
                records[-1]["breakdown_s"] = stages
                parts = [f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in stages.items()]
                print(f"threads {threads}, ge2e small stage seconds (1 pass): {', '.join(parts)}")
    print(table(["threads", "contender", "audio s / wall s", "vs resemblyzer"], rows))
    result = {"machine": info, "split": args.split, "files": [str(f) for f in files], "audio_seconds": audio_s}
    result.update(repeats=args.repeats, bundled_weights=BUNDLED.exists(), results=records)
    print(f"results: {write_result(args.out, result)}")


if __name__ == "__main__":
    main()

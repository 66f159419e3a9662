"""Embedding throughput on CPU: ge2e ``embed_files`` against Resemblyzer's ``embed_utterance``, same files, same run.

Throughput is seconds of audio (decoded file durations) per wall-clock second, for the whole path from file to
d-vector: decoding, resampling, volume normalisation, VAD, log-mel features and the encoder. Contenders:

- ``resemblyzer``: ``VoiceEncoder.embed_utterance(preprocess_wav(path))`` per file (webrtcvad, librosa mels,
  one batch of partial windows per utterance). Needs ``pip install -e '.[bench]'``.
- ``ge2e default (int8 ONNX)``: ``Inference.embed_files`` with the bundled model in the form
  ``ge2e.load_model()`` picks where onnxruntime is installed, its int8 ONNX export (``ge2e_small.int8.onnx``):
  what ``ge2e embed`` runs by default.
- ``ge2e small``: the same with the bundled float32 checkpoint (``load_model(int8=False)``, ``--float32``; random
  weights of the same shape when the file is missing: the compute is the same).
- ``ge2e paper``: the same with the paper preset's shape (random weights).
- ``ge2e small, ONNX``: the float32 checkpoint exported with ``ge2e export --format onnx`` and loaded by
  ``ge2e.load_model``, as ``ge2e embed --model small.onnx`` runs it.

Every thread count in ``--threads`` is measured for every contender; ``ge2e embed``'s default is
``ge2e.cli._model.DEFAULT_THREADS``, and ``--threads`` also takes ``default`` for PyTorch's own setting (one
thread per core), which is what a library user gets without setting anything. Contenders run interleaved
(rotating order) for ``--repeats`` rounds per thread count; the table gives medians. ``--breakdown`` adds one
pass timing each stage of ge2e's path separately. Usage::

    nice -n 15 .venv/bin/python benchmarks/embed.py --split LibriSpeech.test --files 16 --threads 1 default
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import soundfile as sf
import torch

from common import header, interleaved, machine, median, table, write_result
from ge2e.audio import load_speech, log_mel
from ge2e.cli._model import DEFAULT_THREADS
from ge2e.export import export, load_exported
from ge2e.inference import Encoder, as_inference, embed_mels
from ge2e.model import SpeakerEncoder
from ge2e.pretrained import bundled_model_path, load_model, onnxruntime_available

TORCH_DEFAULT_THREADS = torch.get_num_threads()  # read before anything changes it


def split_files(data: Path, split: str, limit: int) -> list[Path]:
    """The first ``limit`` distinct files (sorted) of the official trial list ``trials/<split>.txt``."""
    lines = (data / "trials" / f"{split}.txt").read_text().splitlines()
    names = sorted({p for line in lines if line.strip() for p in line.split()[1:]})
    return [data / n for n in names[:limit]]


def small_encoder() -> SpeakerEncoder:
    """The bundled float32 checkpoint, or random weights of its shape when the file is missing."""
    return load_model(int8=False) if bundled_model_path().exists() else SpeakerEncoder("small").eval()


def contenders(files: list[Path], workdir: Path) -> dict[str, Callable[[], Any]]:
    """name -> a function embedding every file once (models loaded under the current thread setting)."""
    from resemblyzer import VoiceEncoder, preprocess_wav

    resemblyzer = VoiceEncoder("cpu", verbose=False)
    small = small_encoder()
    encoders: dict[str, Encoder] = {}
    int8 = bundled_model_path(int8=True)
    if int8.exists() and onnxruntime_available():
        # opened directly, not through load_model's per-process cache: an ONNX session keeps the thread count
        # it was created with, and each round has its own
        encoders["ge2e default (int8 ONNX)"] = load_exported(int8, torch.get_num_threads())
    encoders |= {"ge2e small": small, "ge2e paper": SpeakerEncoder("paper").eval()}
    onnx = workdir / f"small-{torch.get_num_threads()}.onnx"
    export(small, onnx, "onnx")
    encoders["ge2e small, ONNX"] = load_exported(onnx, torch.get_num_threads())

    def run_resemblyzer() -> list[Any]:
        return [resemblyzer.embed_utterance(preprocess_wav(f)) for f in files]

    def ours(model: Encoder) -> Callable[[], Any]:
        return lambda: as_inference(model).embed_files(files, progress=False)

    return {"resemblyzer": run_resemblyzer, **{name: ours(model) for name, model in encoders.items()}}


def breakdown(files: list[Path], model: Encoder) -> dict[str, float]:
    """Seconds spent in each stage of ge2e's path, one pass over ``files``."""
    cfg = model.audio
    spent = dict.fromkeys(["decode + normalise + VAD", "log-mel", "encoder"], 0.0)
    mels = []
    for f in files:
        start = time.perf_counter()
        wav, mask = load_speech(f, cfg=cfg)
        spent["decode + normalise + VAD"] += time.perf_counter() - start
        start = time.perf_counter()
        feats = log_mel(torch.from_numpy(wav[mask]), cfg)
        mels.append(feats - feats.mean(dim=0, keepdim=True))
        spent["log-mel"] += time.perf_counter() - start
    start = time.perf_counter()
    embed_mels(model, mels)
    spent["encoder"] = time.perf_counter() - start
    return spent


def thread_count(value: str) -> int:
    return TORCH_DEFAULT_THREADS if value == "default" else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("GE2E_DATA", "../shared/data"))
    parser.add_argument("--split", default="LibriSpeech.test", help="trial list whose files are embedded")
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument(
        "--threads", nargs="+", default=["1", "default"], help="thread counts; 'default': PyTorch's (one per core)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--breakdown", action="store_true", help="also time each stage of ge2e's path (1 pass)")
    parser.add_argument("--out", default="embed", help="results/<out>.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # deprecation notices of torch.jit / silero / librosa, not ours to act on
    files = split_files(Path(args.data), args.split, args.files)
    audio_s = sum(sf.info(f).duration for f in files)
    threads_list = [thread_count(t) for t in args.threads]
    info = machine()
    title = f"Embedding throughput, {len(files)} files of {args.split} ({audio_s:.0f} s of audio)"
    print(header(title, info, threads_list))
    print(f"ge2e embed's default: {DEFAULT_THREADS} thread(s); PyTorch's default here: {TORCH_DEFAULT_THREADS}")
    print("throughput = seconds of audio per wall second (median of interleaved repeats); higher is better")

    rows, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in threads_list:
            torch.set_num_threads(threads)
            fns = contenders(files, Path(tmp))
            torch.set_num_threads(threads)  # loading resemblyzer may have changed it
            times = interleaved(fns, args.repeats, warmup=1)
            base = audio_s / median(times["resemblyzer"])
            for name, values in times.items():
                speed = audio_s / median(values)
                rows.append([threads, name, f"{speed:.1f}", f"{speed / base:.2f}x"])
            load = round(os.getloadavg()[0], 2)
            records.append({"threads": threads, "times_s": times, "load_avg_1min_after": load})
            print(f"threads {threads} done, 1-min load average {load}")
            if args.breakdown:
                stages = breakdown(files, small_encoder())
                records[-1]["breakdown_s"] = stages
                print(f"threads {threads}, ge2e small stage seconds (1 pass): "
                      + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))  # fmt: skip
    print(table(["threads", "contender", "audio s / wall s", "vs resemblyzer"], rows))
    result = {"machine": info, "split": args.split, "files": [str(f) for f in files], "audio_seconds": audio_s}
    result.update(
        repeats=args.repeats,
        bundled_weights=bundled_model_path().exists(),
        cli_default_threads=DEFAULT_THREADS,
        torch_default_threads=TORCH_DEFAULT_THREADS,
        results=records,
    )
    print(f"results: {write_result(args.out, result)}")


if __name__ == "__main__":
    main()

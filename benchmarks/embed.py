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
thread per core), which is what a library user gets without setting anything. For each thread count the
contenders run twice: interleaved in this process (rotating order, ``--repeats`` rounds), and each in a fresh
process of its own (``--repeats`` runs); the table gives both medians with the slowest-fastest spread. The
1-minute load average is printed before and after every round; when it rises above half a core per thread in use
the run is not quiet, and its results are not written (``--allow-busy`` writes them, marked ``quiet: false``):
load slows the contenders unequally. ``--breakdown`` adds one pass timing each stage of ge2e's path separately.
Usage::

    nice -n 15 .venv/bin/python benchmarks/embed.py --split LibriSpeech.test --files 16 --threads 1 default
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import soundfile as sf
import torch

from common import (
    QUIET_LOAD_PER_THREAD,
    QUIET_MAX_LOAD_PER_THREAD,
    header,
    interleaved,
    machine,
    median,
    quiet,
    table,
    write_result,
)
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
    """The bundled float32 checkpoint's encoder, or random weights of its shape when the file is missing."""
    return load_model(int8=False).encoder if bundled_model_path().exists() else SpeakerEncoder("small").eval()


def contenders(files: list[Path], workdir: Path, only: str | None = None) -> dict[str, Callable[[], Any]]:
    """name -> a function embedding every file once (models loaded under the current thread setting); ``only``:
    that contender alone (what a process of its own loads)."""
    threads = torch.get_num_threads()

    def resemblyzer() -> Callable[[], Any]:
        from resemblyzer import VoiceEncoder, preprocess_wav

        encoder = VoiceEncoder("cpu", verbose=False)
        return lambda: [encoder.embed_utterance(preprocess_wav(f)) for f in files]

    def ours(load: Callable[[], Encoder]) -> Callable[[], Callable[[], Any]]:
        def build() -> Callable[[], Any]:
            model = as_inference(load())
            return lambda: model.embed_files(files, progress=False)

        return build

    def small_onnx() -> Encoder:
        onnx = workdir / f"small-{threads}.onnx"
        export(small_encoder(), onnx, "onnx")
        return load_exported(onnx, threads)

    builders: dict[str, Callable[[], Callable[[], Any]]] = {"resemblyzer": resemblyzer}
    int8 = bundled_model_path(int8=True)
    if int8.exists() and onnxruntime_available():
        # opened directly, not through load_model's per-process cache: an ONNX session keeps the thread count
        # it was created with, and each round has its own
        builders["ge2e default (int8 ONNX)"] = ours(lambda: load_exported(int8, threads))
    builders["ge2e small"] = ours(small_encoder)
    builders["ge2e paper"] = ours(lambda: SpeakerEncoder("paper").eval())
    builders["ge2e small, ONNX"] = ours(small_onnx)
    if only is not None and only not in builders:
        raise SystemExit(f"embed.py: unknown contender {only!r} (one of: {', '.join(builders)})")
    fns = {name: build() for name, build in builders.items() if only in (None, name)}
    torch.set_num_threads(threads)  # loading resemblyzer may have changed it
    return fns


def in_own_process(args: argparse.Namespace, name: str, threads: int) -> dict[str, Any]:
    """``repeats`` timed runs of one contender in a fresh process of its own: no other contender's memory,
    caches or threads beside it."""
    command = [sys.executable, __file__, "--only", name, "--threads", str(threads), "--files", str(args.files),
               "--split", args.split, "--data", args.data, "--repeats", str(args.repeats)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"embed.py: {name} in its own process failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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


def spread(audio_s: float, times: list[float]) -> str:
    """The slowest and fastest repeat as audio seconds per wall second."""
    return f"{audio_s / max(times):.0f}-{audio_s / min(times):.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("GE2E_DATA", "../shared/data"))
    parser.add_argument("--split", default="LibriSpeech.test", help="trial list whose files are embedded")
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument(
        "--threads", nargs="+", default=["1", "default"], help="thread counts; 'default': PyTorch's (one per core)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--breakdown", action="store_true", help="also time each stage of ge2e's path (1 pass)")
    parser.add_argument("--out", default="embed", help="results/<out>.json, or a path ending in .json")
    parser.add_argument(
        "--allow-busy", action="store_true", help="write the results of a busy run too, marked as not quiet"
    )
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one contender, in the process in_own_process starts
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # deprecation notices of torch.jit / silero / librosa, not ours to act on
    files = split_files(Path(args.data), args.split, args.files)
    audio_s = sum(sf.info(f).duration for f in files)
    threads_list = [thread_count(t) for t in args.threads]
    if args.only:
        torch.set_num_threads(threads_list[0])
        with tempfile.TemporaryDirectory() as tmp:
            loads: list[float] = []
            times = interleaved(contenders(files, Path(tmp), args.only), args.repeats, warmup=1, loads=loads)
        print(json.dumps({"times_s": times[args.only], "loads": loads}))
        return 0
    info = machine()
    title = f"Embedding throughput, {len(files)} files of {args.split} ({audio_s:.0f} s of audio)"
    print(header(title, info, threads_list))
    print(f"ge2e embed's default: {DEFAULT_THREADS} thread(s); PyTorch's default here: {TORCH_DEFAULT_THREADS}")
    print("throughput = seconds of audio per wall second, median of the repeats (slowest-fastest); higher is better")
    print(
        f"a quiet machine: other work takes at most {QUIET_LOAD_PER_THREAD} core per thread in use, all along "
        f"(the 1-minute load, the run's own threads included, stays at most {QUIET_MAX_LOAD_PER_THREAD} per thread)"
    )

    rows, records, busy = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in threads_list:
            torch.set_num_threads(threads)
            loads: list[float] = []
            times = interleaved(contenders(files, Path(tmp)), args.repeats, warmup=1, loads=loads)
            print(f"threads {threads}, interleaved: 1-min load before and after each round {loads}")
            own = {name: in_own_process(args, name, threads) for name in times}
            own_loads = [load for result in own.values() for load in result["loads"]]
            print(f"threads {threads}, each in its own process: 1-min load {own_loads}")
            base = audio_s / median(times["resemblyzer"])
            base_own = audio_s / median(own["resemblyzer"]["times_s"])
            for name, values in times.items():
                speed, speed_own = audio_s / median(values), audio_s / median(own[name]["times_s"])
                rows.append([threads, name, f"{speed:.1f} ({spread(audio_s, values)})", f"{speed / base:.2f}x",
                             f"{speed_own:.1f} ({spread(audio_s, own[name]['times_s'])})",
                             f"{speed_own / base_own:.2f}x"])  # fmt: skip
            if not quiet(loads + own_loads, threads):
                busy.append(threads)
            records.append({"threads": threads, "times_s": times, "loads": loads, "own_process": own})
            if args.breakdown:
                stages = breakdown(files, small_encoder())
                records[-1]["breakdown_s"] = stages
                print(f"threads {threads}, ge2e small stage seconds (1 pass): "
                      + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))  # fmt: skip
    headers = ["threads", "contender", "interleaved", "vs resemblyzer", "own process", "vs resemblyzer"]
    print(table(headers, rows))
    if busy:
        print(f"NOT QUIET: the 1-minute load rose above {QUIET_MAX_LOAD_PER_THREAD} per thread at {busy} thread(s); "
              "these ratios measure the load as much as the code", file=sys.stderr)  # fmt: skip
        if not args.allow_busy:
            print("embed.py: results not written (--allow-busy writes them, marked as not quiet)", file=sys.stderr)
            return 1
    result = {"machine": info, "split": args.split, "files": [str(f) for f in files], "audio_seconds": audio_s}
    result.update(
        repeats=args.repeats,
        quiet=not busy,
        bundled_weights=bundled_model_path().exists(),
        cli_default_threads=DEFAULT_THREADS,
        torch_default_threads=TORCH_DEFAULT_THREADS,
        results=records,
    )
    print(f"results: {write_result(args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

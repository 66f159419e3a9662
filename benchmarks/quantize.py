"""Dynamic int8 quantisation and ONNX Runtime: encoder speed and the EER change on the official test trial lists.

For one trained model, four ways to run it: PyTorch float32 (the reference), PyTorch dynamic int8
(:func:`ge2e.export.quantize_int8`), and ONNX Runtime float32 / int8 (``ge2e export --format onnx [--int8]``).
Each embeds every utterance of the trial lists (features from the prepared cache, so all variants see identical
frames) and is scored with cosine similarity; the table gives EER and the encoder's speed in windows per second
(160-frame windows, batches of 64, interleaved repeats, medians). Usage::

    nice -n 15 .venv/bin/python benchmarks/quantize.py --model exp/shared_ti_small/best.pt --cache cache/ti
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import header, interleaved, machine, median, table, write_result
from ge2e.data.cache import FeatureCache
from ge2e.export import export, load_exported, quantize_int8
from ge2e.inference import embed_mels
from ge2e.metrics import eer
from ge2e.model import SpeakerEncoder
from ge2e.scoring import cosine_scores, read_trials

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "ge2e" / "pretrained" / "ge2e_small.pt"


def variants(model: SpeakerEncoder, workdir: Path, threads: int) -> dict[str, Any]:
    """name -> an encoder that :func:`ge2e.inference.embed_mels` accepts."""
    for int8 in (False, True):
        export(model, workdir / f"model-{int8}.onnx", "onnx", int8=int8)
    return {
        "PyTorch float32": model,
        "PyTorch int8": quantize_int8(model),
        "ONNX Runtime float32": load_exported(workdir / "model-False.onnx", threads=threads),
        "ONNX Runtime int8": load_exported(workdir / "model-True.onnx", threads=threads),
    }


def trial_eer(
    encoders: dict[str, Any], cache: FeatureCache, trials_path: Path, data: Path
) -> tuple[dict[str, float], int]:
    """EER of each encoder on one trial list, and the number of trials left out.

    Utterance features come from ``cache``; trials with a file that ``ge2e prepare`` could not use (listed in
    the cache's errors.tsv: no speech, too short) are left out, identically for every encoder.
    """
    where = {str(Path(u.path).resolve()): i for i, u in enumerate(cache.utterances) if not u.augment}
    listed = read_trials(trials_path, data)
    trials = [t for t in listed if str(t.enroll.resolve()) in where and str(t.test.resolve()) in where]
    paths = sorted({str(p.resolve()) for t in trials for p in (t.enroll, t.test)})
    mels = [torch.from_numpy(cache.features(where[p])) for p in paths]
    row = {p: k for k, p in enumerate(paths)}
    labels = np.array([t.label for t in trials])
    enroll = [row[str(t.enroll.resolve())] for t in trials]
    test = [row[str(t.test.resolve())] for t in trials]
    out = {}
    for name, enc in encoders.items():
        emb = embed_mels(enc, mels, enc.inference).numpy()
        out[name] = eer(cosine_scores(emb[enroll], emb[test]), labels)[0]
    return out, len(listed) - len(trials)


def speed(encoders: dict[str, Any], frames: torch.Tensor, repeats: int) -> dict[str, float]:
    """Windows per second of each encoder on ``frames`` ``(B, 160, n_mels)``, interleaved medians."""

    def call(enc: Any) -> Callable[[], Any]:
        return lambda: enc(frames)

    with torch.inference_mode():
        times = interleaved({k: call(e) for k, e in encoders.items()}, repeats)
    return {k: frames.shape[0] / median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_model = BUNDLED if BUNDLED.exists() else Path("exp/shared_ti_small/best.pt")
    parser.add_argument("--model", type=Path, default=default_model)
    parser.add_argument("--cache", default="cache/ti", help="prepared feature cache holding the trial files")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GE2E_DATA", "../shared/data")))
    parser.add_argument("--lists", nargs="+", default=["LibriSpeech.test", "DSPSpeech-20.test"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="quantize", help="results/<out>.json, or a path ending in .json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    model = SpeakerEncoder.load(args.model)
    cache = FeatureCache(args.cache)
    info = machine()
    print(header(f"int8 and ONNX Runtime: EER and encoder speed, model {args.model}", info, args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        encoders = variants(model, Path(tmp), args.threads)
        frames = torch.randn(64, model.inference.window_frames, model.config.n_mels)
        rates = speed(encoders, frames, args.repeats)
        lists = {name: args.data / "trials" / f"{name}.txt" for name in args.lists}
        scored = {name: trial_eer(encoders, cache, path, args.data) for name, path in lists.items()}
    eers = {name: e for name, (e, _) in scored.items()}
    for name, (_, dropped) in scored.items():
        print(f"{name}: {dropped} trial(s) left out (a file that the front end rejects, see {args.cache}/errors.tsv)")
    ref = "PyTorch float32"
    rows = []
    for name in encoders:
        cells = [
            f"{100 * eers[lst][name]:.2f}% ({100 * (eers[lst][name] - eers[lst][ref]):+.2f})" for lst in args.lists
        ]
        rows.append([name, *cells, f"{rates[name]:.0f}", f"{rates[name] / rates[ref]:.2f}x"])
    headers = ["encoder", *(f"EER {lst} (change)" for lst in args.lists), "windows/s", "speed vs float32"]
    print(table(headers, rows))
    result = {"machine": info, "threads": args.threads, "model": str(args.model), "meta": model.meta}
    result.update(eer=eers, trials_left_out={k: d for k, (_, d) in scored.items()}, windows_per_s=rates)
    result.update(repeats=args.repeats)
    print(f"results: {write_result(args.out, result)}")


if __name__ == "__main__":
    main()

"""Training speed on CPU: steps per second and where a step's time goes, for the small and paper presets.

Runs ge2e's own training pieces (``BatchDataset`` from a prepared feature cache, a ``DataLoader`` with worker
processes, ``Objective`` = encoder + GE2E loss, gradient clipping, the optimiser) the way ``ge2e.train.train``
does, and splits each step into: waiting for the DataLoader, forward, backward, and optimiser (clip + step).
``--profile`` adds the torch.profiler table of the heaviest operators of one step. Usage::

    nice -n 15 .venv/bin/python benchmarks/train_step.py --cache cache/ti --speakers 20 --utterances 8 --steps 6
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch import nn

from common import header, machine, median, table, write_result
from ge2e.config import DataConfig, LossConfig, SourceConfig
from ge2e.data.sampler import BatchDataset, SpeakerPool
from ge2e.loss import build_loss
from ge2e.model import SpeakerEncoder, preset
from ge2e.train import Objective

PHASES = ("data wait", "forward", "backward", "optimiser")


def measure(
    name: str, pool: SpeakerPool, data: DataConfig, steps: int, profile: bool
) -> tuple[dict[str, list[float]], str]:
    """Per-phase seconds of ``steps`` training steps (after one warm-up step), and a profiler table or ''."""
    objective = Objective(SpeakerEncoder(preset(name), pool.cache.audio_config), build_loss(LossConfig()), [1.0])
    params = list(objective.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    loader = torch.utils.data.DataLoader(
        BatchDataset([pool], data, seed=0, steps=steps + 1),
        batch_size=None,
        num_workers=data.num_workers,
        prefetch_factor=4 if data.num_workers > 0 else None,
    )
    spent: dict[str, list[float]] = {p: [] for p in PHASES}
    report = ""
    tick = time.perf_counter()
    for step, batches in enumerate(loader):
        marks = [tick, time.perf_counter()]
        total, _ = objective(batches)
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        marks.append(time.perf_counter())
        nn.utils.clip_grad_norm_(params, 3.0)
        optimizer.step()
        marks.append(time.perf_counter())
        if step > 0:  # step 0 pays worker start-up and first-call allocations
            for phase, start, end in zip(PHASES, marks[:-1], marks[1:], strict=True):
                spent[phase].append(end - start)
        if profile and step == 1:
            report = profile_step(objective, optimizer, params, batches)
        tick = time.perf_counter()
    return spent, report


def profile_step(objective: Objective, optimizer: torch.optim.Optimizer, params: list, batches: list) -> str:
    """torch.profiler's table of the operators of one full step (forward, backward, clip, optimiser)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        total, _ = objective(batches)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(params, 3.0)
        optimizer.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default="cache/ti", help="prepared feature cache (ge2e prepare)")
    parser.add_argument("--splits", nargs="*", default=["LibriSpeech.train", "DSPSpeech-20.train"])
    parser.add_argument("--presets", nargs="+", default=["small", "paper"])
    parser.add_argument("--speakers", type=int, default=20, help="N speakers per batch (paper: 64)")
    parser.add_argument("--utterances", type=int, default=8, help="M utterances per speaker (paper: 10)")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per preset (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", default="train_step", help="results/<out>.json, or a path ending in .json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the paper preset's "LSTM with projections is not supported with oneDNN"
    torch.set_num_threads(args.threads)
    data = DataConfig(speakers_per_batch=args.speakers, utterances_per_speaker=args.utterances)
    data.num_workers = args.workers
    pool = SpeakerPool.from_source(SourceConfig(cache=args.cache, splits=args.splits), data.min_utterances)
    info = machine()
    title = (
        f"Training steps, N={args.speakers} x M={args.utterances} x 140-180 frames, {args.workers} DataLoader "
        f"worker(s), {args.cache} ({', '.join(args.splits)}), Adam"
    )
    print(header(title, info, args.threads))
    rows, records = [], []
    for name in args.presets:
        spent, report = measure(name, pool, data, args.steps, args.profile)
        step_s = [sum(parts) for parts in zip(*spent.values(), strict=True)]
        share = {p: sum(v) / sum(step_s) for p, v in spent.items()}
        rows.append(
            [name, f"{1 / median(step_s):.3f}", f"{median(step_s):.2f}"] + [f"{100 * share[p]:.0f}%" for p in PHASES]
        )
        records.append({"preset": name, "step_s": step_s, "phases_s": spent, "share": share})
        if report:
            print(f"\n{name}: heaviest operators of one step\n{report}")
    print(table(["preset", "steps/s", "s/step (median)", *(f"{p} share" for p in PHASES)], rows))
    result = {"machine": info, "threads": args.threads, "N": args.speakers, "M": args.utterances}
    result.update(workers=args.workers, cache=args.cache, splits=args.splits, results=records)
    print(f"results: {write_result(args.out, result)}")


if __name__ == "__main__":
    main()

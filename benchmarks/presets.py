"""Why the ``small`` preset has no LSTM projection: training cost of projected vs unprojected LSTMs on CPU.

PyTorch's oneDNN LSTM kernel does not take ``proj_size``; a projected LSTM falls back to the generic
implementation. For several hidden sizes this times one forward + backward of a 3-layer batch-first LSTM on
``(B, T, 40)`` frames with a projection to P, against the same LSTM without projection followed by a linear
layer to P (what ``ge2e.model.SpeakerEncoder`` does when ``proj_size == 0``), and that unprojected LSTM again
with oneDNN switched off (``torch.backends.mkldnn.flags(enabled=False)``: PyTorch's native kernel, the one a
projected LSTM gets), interleaved, medians. Usage::

    nice -n 15 .venv/bin/python benchmarks/presets.py --batch 64 --frames 160 --threads 1
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import torch
from torch import nn

from common import header, interleaved, machine, median, table, write_result
from ge2e.config import ModelConfig
from ge2e.model import SpeakerEncoder


def step(model: SpeakerEncoder, frames: torch.Tensor, onednn: bool = True) -> Callable[[], None]:
    """One training-shaped unit: encoder forward on the batch, a scalar loss, backward."""

    def run() -> None:
        model.zero_grad(set_to_none=True)
        with torch.backends.mkldnn.flags(enabled=onednn):
            model(frames).square().sum().backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["256:128", "512:256", "768:256"], help="HIDDEN:PROJ")
    parser.add_argument("--batch", type=int, default=64, help="sequences per batch (N*M in training)")
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="presets", help="results/<out>.json, or a path ending in .json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # "LSTM with projections is not supported with oneDNN": that is the point
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = machine()
    title = f"3-layer LSTM forward + backward, batch {args.batch} x {args.frames} frames x 40 mels (ms, medians)"
    print(header(title, info, args.threads))
    frames = torch.randn(args.batch, args.frames, 40)
    rows, records = [], []
    for text in args.sizes:
        hidden, proj = (int(x) for x in text.split(":"))
        models = {
            "projection": SpeakerEncoder(ModelConfig(hidden_size=hidden, proj_size=proj, num_layers=args.layers)),
            "no projection": SpeakerEncoder(ModelConfig(hidden_size=hidden, proj_size=0, num_layers=args.layers)),
        }
        # the unprojected model's embedding is H-dimensional; a linear layer to P keeps the outputs comparable
        models["no projection"].linear = nn.Linear(hidden, proj)
        fns = {k: step(m, frames) for k, m in models.items()}
        fns["no projection, oneDNN off"] = step(models["no projection"], frames, onednn=False)
        times = interleaved(fns, args.repeats)
        ms = {k: 1000 * median(v) for k, v in times.items()}
        params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
        rows.append(
            [
                f"{hidden} -> {proj}",
                f"{ms['projection']:.0f}",
                f"{ms['no projection']:.0f}",
                f"{ms['no projection, oneDNN off']:.0f}",
                f"{ms['projection'] / ms['no projection']:.2f}x",
                f"{params['projection'] / 1e6:.2f}M / {params['no projection'] / 1e6:.2f}M",
            ]
        )
        records.append({"hidden": hidden, "proj": proj, "median_ms": ms, "times_s": times, "params": params})
    headers = ["hidden -> D", "projection ms", "no projection + linear ms", "same, oneDNN off ms"]
    headers += ["projection / no projection"]
    print(table([*headers, "parameters (proj / no proj)"], rows))
    result = {"machine": info, "threads": args.threads, "batch": args.batch, "frames": args.frames}
    result.update(layers=args.layers, repeats=args.repeats, results=records)
    print(f"results: {write_result(args.out, result)}")


if __name__ == "__main__":
    main()

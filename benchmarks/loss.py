"""GE2E softmax loss forward + backward on CPU: ge2e's vectorised loss against two loop-based implementations.

Measured in one run, interleaved, on the same ``(N, M, D)`` embeddings:

- ``ge2e``: :class:`ge2e.loss.GE2ELoss` (Eq. 6 and 9: every cosine from one ``(N, M, N)``
  product with the speaker sums and squared norms, no Python loop).
- ``per-speaker loop``: one column of the similarity matrix per speaker k, the way the common PyTorch ports
  build it (e.g. Real-Time-Voice-Cloning's ``similarity_matrix``): N small ops per batch.
- ``per-utterance loop`` (reference): for every utterance e_ji, its own centroid set with c_j replaced by the
  leave-one-out centroid, then cosine similarity to all N centroids, as in the early GE2E ports: N*M iterations.

All three compute the same summed loss (checked before timing). Usage::

    nice -n 15 .venv/bin/python benchmarks/loss.py            # (64, 10, 256) and larger, 1 thread
    .venv/bin/python benchmarks/loss.py --sizes 64x10x256 --repeats 20 --threads 2
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F

from common import header, interleaved, machine, median, table, write_result
from ge2e.loss import GE2ELoss

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def per_speaker_loop(e: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Summed GE2E softmax loss, building the ``(N, M, N)`` similarity one centroid column at a time."""
    n, m, _ = e.shape
    e_unit = F.normalize(e, dim=-1)
    c_incl = F.normalize(e.mean(dim=1), dim=-1)
    c_excl = F.normalize((e.sum(dim=1, keepdim=True) - e) / (m - 1), dim=-1)
    columns = []
    for k in range(n):
        col = (e_unit * c_incl[k]).sum(dim=-1)  # (N, M): every utterance against speaker k
        own = (e_unit[k] * c_excl[k]).sum(dim=-1)  # (M,): speaker k's utterances against their own c_k^(-i)
        columns.append(torch.cat([col[:k], own.unsqueeze(0), col[k + 1 :]]))
    s = w * torch.stack(columns, dim=-1) + b
    targets = torch.arange(n).repeat_interleave(m)
    return F.cross_entropy(s.reshape(n * m, n), targets, reduction="sum")


def per_utterance_loop(e: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Summed GE2E softmax loss with one Python iteration per utterance e_ji (the reference formulation)."""
    n, m, _ = e.shape
    centroids = e.mean(dim=1)
    total = e.new_zeros(())
    for j in range(n):
        for i in range(m):
            excl = torch.cat([e[j, :i], e[j, i + 1 :]]).mean(dim=0)
            cs = torch.cat([centroids[:j], excl.unsqueeze(0), centroids[j + 1 :]])
            s = w * F.cosine_similarity(e[j, i].unsqueeze(0), cs, dim=-1) + b  # (N,)
            total = total - s[j] + torch.logsumexp(s, dim=0)
    return total


def ge2e_loss(module: GE2ELoss) -> LossFn:
    def run(e: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return module(e)

    return run


def fwd_bwd(fn: LossFn, e: torch.Tensor, w: torch.Tensor, b: torch.Tensor, inner: int) -> Callable[[], None]:
    """One timed unit: ``inner`` back-to-back loss forward + backward passes (gradients reset each time).

    With ``inner == 1`` every call follows the other contenders' calls, whose large temporaries leave the caches
    cold, as in training where the loss follows the encoder; larger ``inner`` measures warm back-to-back calls.
    """

    def step() -> None:
        for _ in range(inner):
            e.grad = None
            fn(e, w, b).backward()

    return step


def parse_size(text: str) -> tuple[int, int, int]:
    n, m, d = (int(x) for x in text.lower().split("x"))
    return n, m, d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["64x10x256", "64x10x768", "128x10x256", "64x20x256"])
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds per size (medians are reported)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--inner", type=int, default=1, help="back-to-back calls per timed unit (per-call times)")
    parser.add_argument("--out", default="loss", help="results/<out>.json, or a path ending in .json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = machine()
    title = f"GE2E softmax loss, forward + backward (ms per call, {args.inner} back-to-back call(s) per timed unit)"
    print(header(title, info, args.threads))

    rows, records = [], []
    for text in args.sizes:
        n, m, d = parse_size(text)
        e = torch.randn(n, m, d, requires_grad=True)
        module = GE2ELoss()
        w, b = module.w.detach().clone().requires_grad_(), module.b.detach().clone().requires_grad_()
        contenders: dict[str, LossFn] = {
            "ge2e": ge2e_loss(module),
            "per-speaker loop": per_speaker_loop,
            "per-utterance loop": per_utterance_loop,
        }
        with torch.no_grad():
            values = {name: float(fn(e, w, b)) for name, fn in contenders.items()}
        ref = values["per-utterance loop"]
        for name, value in values.items():
            if abs(value - ref) > 1e-4 * abs(ref):
                raise SystemExit(f"{name} loss {value} differs from the reference {ref} at {text}")
        times = interleaved({k: fwd_bwd(fn, e, w, b, args.inner) for k, fn in contenders.items()}, args.repeats)
        ms = {k: 1000 * median(v) / args.inner for k, v in times.items()}
        rows.append(
            [
                f"({n}, {m}, {d})",
                f"{ms['ge2e']:.2f}",
                f"{ms['per-speaker loop']:.2f}",
                f"{ms['per-utterance loop']:.1f}",
                f"{ms['per-speaker loop'] / ms['ge2e']:.1f}x",
                f"{ms['per-utterance loop'] / ms['ge2e']:.0f}x",
            ]
        )
        records.append({"N": n, "M": m, "D": d, "median_ms": ms, "times_s": times, "loss": values})
    headers = ["(N, M, D)", "ge2e ms", "per-speaker loop ms", "per-utterance loop ms"]
    headers += ["ge2e speed-up vs per-speaker", "ge2e speed-up vs per-utterance"]
    print(table(headers, rows))
    result = {"machine": info, "threads": args.threads, "repeats": args.repeats, "inner": args.inner}
    result["results"] = records
    path = write_result(args.out, result)
    print(f"results: {path}")


if __name__ == "__main__":
    main()

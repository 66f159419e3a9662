"""``ge2e train CONFIG.yaml``: train or resume a speaker encoder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a speaker encoder from a YAML config (resumes from OUT_DIR/last.pt)",
        description="Train a GE2E/TE2E speaker encoder. Multi-GPU: torchrun --nproc_per_node K -m ge2e train ...",
    )
    p.add_argument("config", help="YAML training config (see recipes/)")
    p.add_argument("overlays", nargs="*", metavar="OVERLAY", help="YAML files laid over the config, in order")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys, e.g. steps=100")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.csv)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ge2e.config import apply_overrides, load_config
    from ge2e.train import train

    cfg = apply_overrides(load_config(args.config, overlays=args.overlays), args.set)
    train(cfg, progress=not args.no_progress)
    print(f"model written to {cfg.out_dir}/model.pt (best validation checkpoint: {cfg.out_dir}/best.pt)")
    return 0

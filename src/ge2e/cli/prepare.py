"""``ge2e prepare``: read corpora, compute VAD-trimmed log-mel features once, store them in a feature cache."""

from __future__ import annotations

import argparse
import re
import signal
import sys
from collections import Counter
from typing import Any

LAYOUT_CHOICES = (
    "auto",
    "voxceleb",
    "librispeech",
    "speech_commands",
    "dspspeech",
    "fsdd",
    "speechocean762",
    "wuw2",
    "generic",
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="compute and cache features of one or more corpora",
        description="Compute VAD-trimmed log-mel features of every file of the corpora into a float16 feature "
        "cache (resumable: re-running skips finished shards). Bad files are listed and skipped.",
    )
    p.add_argument("corpora", nargs="+", metavar="CORPUS", help="corpus folder(s)")
    p.add_argument("--out", required=True, metavar="DIR", help="cache folder (created; resumed if it exists)")
    p.add_argument("--layout", default="auto", choices=LAYOUT_CHOICES, help="corpus layout (default: detect)")
    p.add_argument("--corpus-name", metavar="NAME", help="corpus name (default: per layout, else folder name)")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--split-file", metavar="FILE", help="keep only the speakers listed in FILE (one per line)")
    keep.add_argument("--speakers", nargs="+", metavar="ID", help="keep only these speaker ids or corpus/id keys")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2; <= 1: no pool)")
    p.add_argument("--shard-size", type=int, default=500, help="utterances per shard (default 500)")
    p.add_argument(
        "--augment",
        default="",
        metavar="KINDS",
        help="comma list of speed,noise,reverb,telephone,babble,level (default none)",
    )
    p.add_argument(
        "--noise-dir",
        metavar="DIR",
        help="noise recordings for --augment noise (default: generated); speech of other people for babble",
    )
    p.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")
    p.add_argument("--config", metavar="YAML", help="training config whose audio section sets the front end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # an exception unwinds through prepare's finally blocks, which stop the worker pool; the default action
    # (dying at once) would leave the workers to notice the missing parent on their own
    print("ge2e prepare: terminated; re-run the same command to resume", file=sys.stderr)
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    from ge2e.config import AudioConfig, load_config
    from ge2e.data.prepare import prepare
    from ge2e.data.readers import read_corpus, read_speaker_list
    from ge2e.errors import Ge2eError

    cfg = load_config(args.config).audio if args.config else AudioConfig()
    manifest = []
    for root in args.corpora:
        utts = read_corpus(root, args.layout, args.corpus_name)
        print(f"{root}: {len(utts)} files, {len({u.key for u in utts})} speakers")
        manifest.extend(utts)
    keep = read_speaker_list(args.split_file) if args.split_file else set(args.speakers or ())
    if keep:
        manifest = [u for u in manifest if u.speaker in keep or u.key in keep]
        print(f"kept {len(manifest)} files of the {len(keep)} listed speakers")
        if not manifest:
            raise Ge2eError("none of the listed speakers is in the corpora")
    report = prepare(
        manifest,
        args.out,
        cfg,
        workers=args.workers,
        shard_size=args.shard_size,
        progress=not args.no_progress,
        augment=args.augment,
        noise_dir=args.noise_dir,
        seed=args.seed,
    )
    print(
        f"{report.out_dir}: {report.utterances} utterances cached ({report.new_utterances} new, "
        f"{report.new_shards} new shards, {report.reused_shards} reused), {report.frames} frames, "
        f"{report.hours:.2f} h of speech, {report.seconds:.0f} s"
    )
    if report.skipped:
        # group by the problem's wording: drop the details in parentheses and the numbers
        reasons = Counter(re.sub(r"\d+", "N", problem.split(" (")[0]) for _, problem in report.skipped)
        print(f"skipped {len(report.skipped)} file(s) (listed in {report.out_dir}/errors.tsv):")
        for reason, count in reasons.most_common():
            print(f"  {count:6d}  {reason}")
    return 0 if report.utterances else 1

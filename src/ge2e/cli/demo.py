"""``ge2e demo``: enroll held-out speakers, verify their other utterances, print scores, decisions and the EER.

On the shared data folder (``$GE2E_DATA``, default ``../shared/data``) it uses the official TEST speakers of one
corpus (LibriSpeech by default), which the bundled model never saw. ``--data DIR`` takes any folder of
``<speaker>/<utterance>`` audio instead (or another layout ``ge2e prepare`` detects), using all its speakers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ge2e.cli._model import add_model_options, open_model
from ge2e.cli._preflight import MATPLOTLIB_HINT, add_mkdir_option, check_output, report_skipped, require_module
from ge2e.cli.embed import add_speaker_level_option
from ge2e.errors import Ge2eError

DEFAULT_DATA = "../shared/data"
SHARED_CORPORA = {"LibriSpeech": "librispeech", "DSPSpeech-20": "dspspeech"}
NO_DATA = 2  # exit status when there is no data folder: a usage problem, not a failure of the model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="enroll held-out speakers, verify other utterances, print scores and the EER, draw plots",
        description="Enroll each speaker from a few utterances, verify every other utterance against every "
        "speaker, print a table of scores and decisions with the equal error rate, and write a similarity "
        "heatmap and a 2-D projection. Data: the official test speakers of the shared data folder "
        f"($GE2E_DATA, default {DEFAULT_DATA}), or --data DIR with a <speaker>/<utterance> layout.",
    )
    p.add_argument("--data", metavar="DIR", help=f"data folder (default: $GE2E_DATA or {DEFAULT_DATA})")
    p.add_argument(
        "--corpus",
        choices=tuple(SHARED_CORPORA),
        default="LibriSpeech",
        help="corpus of the shared data folder whose official test speakers to use (default LibriSpeech)",
    )
    p.add_argument("--enroll", type=int, default=3, metavar="K", help="enrollment utterances per speaker (3)")
    p.add_argument("--per-speaker", type=int, default=10, metavar="N", help="utterances used per speaker (10)")
    p.add_argument("--out", default="demo_out", metavar="DIR", help="folder for the plots (default demo_out)")
    add_mkdir_option(p)
    add_model_options(p)
    p.add_argument("--threshold", type=float, help="decision threshold (default: the model's calibrated one)")
    p.add_argument("--method", choices=("pca", "umap"), default="pca", help="2-D projection (default pca)")
    add_speaker_level_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


@dataclass
class Selection:
    """The demo's utterances, grouped by speaker (sorted paths), and where they come from."""

    speakers: dict[str, list[str]]
    source: str


def select_utterances(data: Path, corpus: str, per_speaker: int, level: int | None = None) -> Selection:
    """Utterances per speaker: the official test split of ``corpus`` in the shared folder, else every speaker.

    Speakers are named by :func:`ge2e.data.readers.name_speakers` (``level`` as there). At most ``per_speaker``
    files per speaker, spread evenly over its sorted files (so that a speaker's selection spans its recordings
    rather than its first few).
    """
    from ge2e.data.readers import load_split, name_speakers, read_corpus

    split_file = data / "splits" / f"{corpus}.test.txt"
    if split_file.is_file() and (data / corpus).is_dir():
        keep = load_split(data, corpus, "test")
        utterances = [u for u in read_corpus(data / corpus, SHARED_CORPORA[corpus]) if u.speaker in keep]
        source = f"{corpus}, official test speakers ({split_file}); never seen in training"
    else:
        try:
            utterances = read_corpus(data)
        except Ge2eError as exc:
            raise Ge2eError(f"{exc} (the demo expects <speaker>/<utterance> audio files)") from None
        source = f"{data}, all speakers"
    speakers: dict[str, list[str]] = {}
    for utt in name_speakers(utterances, level):
        speakers.setdefault(utt.speaker, []).append(utt.path)
    for name, paths in speakers.items():
        paths.sort()
        if per_speaker > 0 and len(paths) > per_speaker:
            picks = np.linspace(0, len(paths) - 1, per_speaker).round().astype(int)
            speakers[name] = [paths[i] for i in picks]
    return Selection(dict(sorted(speakers.items())), source)


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Plain aligned text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells))
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _no_data_message(data: Path) -> str:
    return (
        f"ge2e demo: no data folder at {data}.\n"
        "Point the demo at any folder of audio files laid out as <speaker>/<utterance>.wav (flac, ogg, opus, "
        "mp3 also work), at least 2 speakers with 4+ utterances each:\n"
        "    ge2e demo --data DIR        (or: export GE2E_DATA=DIR; make demo GE2E_DATA=DIR)"
    )


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    data = Path(args.data or os.environ.get("GE2E_DATA") or DEFAULT_DATA)
    if not data.is_dir():
        print(_no_data_message(data), file=sys.stderr)
        return NO_DATA
    # torch-heavy imports only once there is work to do, so that the message above comes at once
    from ge2e.api import average_embeddings, default_threshold, embed_files
    from ge2e.cli.plot import project_2d, save_heatmap, save_projection
    from ge2e.metrics import eer

    if args.enroll < 1 or args.per_speaker < args.enroll + 1:
        raise Ge2eError(f"need --enroll >= 1 and --per-speaker > --enroll, got {args.enroll} and {args.per_speaker}")
    require_module("matplotlib", MATPLOTLIB_HINT)
    check_output(args, args.out, folder=True)
    model = open_model(args)
    selection = select_utterances(data, args.corpus, args.per_speaker, args.speaker_level)
    print(f"data: {selection.source}")
    paths = [p for files in selection.speakers.values() for p in files]
    result = embed_files(paths, model, progress=not args.no_progress)
    report_skipped(result.errors)
    embedding_of = result.as_dict()

    # ---- enrollment: the first K usable utterances of each speaker; the rest are test utterances --------------
    names, centroids, tests, test_owner = [], [], [], []
    for name, files in selection.speakers.items():
        usable = [p for p in files if p in embedding_of]
        if len(usable) < args.enroll + 1:
            print(f"skipped speaker {name}: {len(usable)} usable utterance(s), need {args.enroll + 1}")
            continue
        names.append(name)
        centroids.append(average_embeddings(np.stack([embedding_of[p] for p in usable[: args.enroll]])))
        tests.extend(usable[args.enroll :])
        test_owner.extend([len(names) - 1] * (len(usable) - args.enroll))
    if len(names) < 2:
        raise Ge2eError(f"{data}: the demo needs at least 2 speakers with {args.enroll + 1}+ usable utterances")

    # ---- trials: every test utterance against every enrolled speaker ------------------------------------------
    test_emb = np.stack([embedding_of[p] for p in tests])
    scores = test_emb @ np.stack(centroids).T  # (tests, speakers) cosine scores
    owner = np.asarray(test_owner)
    is_target = owner[:, None] == np.arange(len(names))[None, :]
    equal_error, eer_threshold = eer(scores.ravel(), is_target.ravel())
    if args.threshold is not None:
        threshold, threshold_name = args.threshold, "given"
    elif getattr(model, "calibration", None):
        threshold, threshold_name = default_threshold(model), "calibrated on the dev speakers"
    else:
        threshold, threshold_name = eer_threshold, "EER threshold of these trials: this model has no calibration"
    accepted = scores >= threshold

    rows = []
    for s, name in enumerate(names):
        own, other = is_target[:, s], ~is_target[:, s]
        rows.append(
            [
                name,
                str(args.enroll),
                f"{scores[own, s].mean():.3f}",
                f"{int(accepted[own, s].sum())}/{int(own.sum())}",
                f"{scores[other, s].max():.3f}",
                f"{int(accepted[other, s].sum())}/{int(other.sum())}",
                f"{int((scores[owner == s].argmax(axis=1) == s).sum())}/{int(own.sum())}",
            ]
        )
    header = ["speaker", "enroll", "own mean", "accepted", "others max", "false accepts", "top-1"]
    print()
    print(format_table(header, rows))
    n_target, n_non = int(is_target.sum()), int((~is_target).sum())
    misses, false_alarms = int((~accepted & is_target).sum()), int((accepted & ~is_target).sum())
    top1 = int((scores.argmax(axis=1) == owner).sum())
    print()
    print(f"trials: {len(tests)} test utterances x {len(names)} speakers = {n_target} target + {n_non} non-target")
    print(f"EER: {100 * equal_error:.2f}% (at threshold {eer_threshold:.3f})")
    print(
        f"threshold {threshold:.3f} ({threshold_name}): {misses}/{n_target} misses "
        f"({100 * misses / n_target:.1f}%), {false_alarms}/{n_non} false accepts ({100 * false_alarms / n_non:.1f}%)"
    )
    print(f"identification (closed set, top-1): {top1}/{len(tests)} correct")

    # ---- plots --------------------------------------------------------------------------------------------------
    out = Path(args.out)
    order = [p for files in selection.speakers.values() for p in files if p in embedding_of]
    speaker_of = {p: name for name, files in selection.speakers.items() for p in files}
    emb = np.stack([embedding_of[p] for p in order])
    labels = [speaker_of[p] for p in order]
    save_heatmap(emb @ emb.T, labels, out / "similarity.png", "Cosine similarity of utterances", grouped=True)
    coords = project_2d(np.vstack([emb, np.stack(centroids)]), args.method)
    kept = [i for i, label in enumerate(labels) if label in names]
    title = f"{len(names)} speakers ({args.method.upper()}); stars: enrolled speaker embeddings"
    save_projection(coords[kept], [labels[i] for i in kept], out / "projection.png", title, coords[len(emb) :])
    print(f"plots: {out / 'similarity.png'}, {out / 'projection.png'}  ({time.perf_counter() - started:.1f} s)")
    return 0

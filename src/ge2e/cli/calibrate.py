"""``ge2e calibrate [--model M] (--trials LIST... | --folder DIR) [--far RATE]``: choose and store the default
decision threshold of a model (see :mod:`ge2e.calibration`)."""

from __future__ import annotations

import argparse

from ge2e.cli._model import add_model_options, open_model
from ge2e.cli._output import add_output_options, human_stream, print_json
from ge2e.cli.embed import add_speaker_level_option
from ge2e.errors import printable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="choose a model's default decision threshold on development data and store it with the model",
        description="Score development trials (VoxCeleb-format lists, or a <speaker>/<utterance> folder whose "
        "speakers are enrolled with --enroll utterances and tested with the others), pool them, and choose the "
        "threshold at the equal-error-rate point or, with --far, at a target false-accept rate. Trials whose "
        "audio cannot be used are dropped and each is named with the reason. The record (criterion, data, error "
        "rates there) is written beside a --model checkpoint with .json for .pt (best.pt -> best.json), or into "
        "an exported .onnx/.ts file; `verify`, `identify` and the Python API then use it. Without --model the "
        "bundled model is calibrated and the threshold printed, not stored (pass it as --threshold). Use speakers "
        "you do not report figures on (the official *.dev lists, not *.test).",
    )
    add_model_options(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--trials", nargs="+", metavar="LIST", help="trial list(s), one 'label enroll test' a line")
    src.add_argument("--folder", metavar="DIR", help="a folder of <speaker>/<utterance> audio files")
    p.add_argument("--root", help="folder the trial-list paths are relative to (default: see docs/evaluation.md)")
    p.add_argument("--enroll", type=int, default=1, metavar="K", help="--folder: enrollment utterances (1)")
    add_speaker_level_option(p)
    p.add_argument(
        "--far",
        type=float,
        metavar="RATE",
        help="choose the lowest threshold with at most this false-accept rate (e.g. 0.01); default: the EER point",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_output_options(p, quiet=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ge2e.calibration import calibrate, folder_source, list_sources, store

    sources = (
        folder_source(args.folder, args.enroll, level=args.speaker_level)
        if args.folder
        else list_sources(args.trials, args.root)
    )
    model = open_model(args)
    record = calibrate(model, sources, args.far, progress=not args.no_progress)
    where = store(args.model, record) if args.model else None
    text = human_stream(args)
    for name, figures in record["lists"].items():
        for trial in figures["dropped_trials"]:
            print(
                f"dropped trial of {name}: {trial['label']} {' '.join(map(printable, trial['enroll']))} "
                f"{printable(trial['test'])}: {printable(trial['file'])}: {trial['problem']}",
                file=text,
            )
        print(
            f"{name}: EER {100 * figures['eer']:.2f}%; at the threshold {100 * figures['false_accept_rate']:.1f}% "
            f"false accepts, {100 * figures['miss_rate']:.1f}% misses ({figures['n_trials']} trials"
            f"{', ' + str(figures['skipped_trials']) + ' dropped' if figures['skipped_trials'] else ''})",
            file=text,
        )
    if args.json:
        print_json({**record, "stored_in": str(where) if where else None})
        return 0
    print(f"threshold {record['threshold']:.4f}: {record['method']}")
    if where:
        print(f"stored in {where}")
    else:
        threshold = record["threshold"]
        print(f"not stored: the bundled model's files are part of the install; use --threshold {threshold:.4f}")
    return 0

"""``ge2e eval``: EER and minDCF of a speaker encoder on a trial list or on a corpus of held-out speakers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ge2e.cli._model import add_model_options, open_model
from ge2e.cli._output import add_output_options, human_stream, print_json
from ge2e.cli._preflight import add_mkdir_option, check_output
from ge2e.cli.embed import add_speaker_level_option

if TYPE_CHECKING:
    from ge2e.evaluate import EvalTrial


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a speaker encoder: EER, minDCF, DET curve and score histogram",
        description=(
            "Score a VoxCeleb-format trial list (--trials) or build enrollment/test trials from a corpus "
            "(--corpus: K utterances per speaker averaged into a speaker model, the rest are test utterances). "
            "Writes OUT/report.json, scores.tsv, det.png, score_histogram.png and embeddings.npz (reused by "
            "later runs with the same model)."
        ),
    )
    add_model_options(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--trials", help="trial list, one 'label enroll_path test_path' per line")
    src.add_argument("--corpus", help="corpus folder to build trials from")
    p.add_argument("--root", help="folder the trial-list paths are relative to (default: see docs/evaluation.md)")
    p.add_argument("--layout", default="auto", help="corpus layout (see `ge2e prepare`), default auto")
    p.add_argument("--enroll", type=int, default=3, metavar="K", help="enrollment utterances per speaker (3)")
    add_speaker_level_option(p)
    p.add_argument(
        "--split-file", nargs="+", default=[], metavar="FILE", help="keep only the speakers listed (one id a line)"
    )
    p.add_argument("--by-label", action="store_true", help="text-dependent: enroll and test within one keyword")
    p.add_argument("--seed", type=int, default=0, help="seed of the enrollment draw (corpus mode)")
    p.add_argument("--norm", choices=("none", "snorm", "asnorm"), default="none", help="score normalisation")
    p.add_argument("--cohort-cache", metavar="DIR", help="feature cache holding the cohort speakers")
    p.add_argument(
        "--cohort-splits", nargs="+", default=[], metavar="SPLIT", help="cohort speakers, e.g. LibriSpeech.train"
    )
    p.add_argument("--top-n", type=int, default=100, help="AS-norm: cohort scores kept per side (100)")
    p.add_argument(
        "--features", nargs="+", default=[], metavar="DIR", help="feature caches to read known files from (faster)"
    )
    p.add_argument("--split", help="name of the evaluated split in the report (default: from the file names)")
    p.add_argument("--no-store", action="store_true", help="do not read or write OUT/embeddings.npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; its parent must exist)")
    add_mkdir_option(p)
    add_output_options(p, quiet=False)
    p.set_defaults(func=run)


def _corpus_trials(args: argparse.Namespace) -> tuple[list[EvalTrial], dict]:
    from ge2e.data.readers import name_speakers, read_corpus, read_speaker_list
    from ge2e.errors import Ge2eError
    from ge2e.evaluate import corpus_trials

    utterances = name_speakers(read_corpus(args.corpus, layout=args.layout), args.speaker_level)
    if args.split_file:
        keep = set().union(*(read_speaker_list(f) for f in args.split_file))
        utterances = [u for u in utterances if u.speaker in keep or u.key in keep]
        if not utterances:
            raise Ge2eError(f"{args.corpus}: no utterance of the speakers listed in {', '.join(args.split_file)}")
    trials, left_out = corpus_trials(utterances, args.enroll, args.seed, args.by_label)
    if not trials:
        raise Ge2eError(f"{args.corpus}: no speaker has more than --enroll {args.enroll} utterances")
    split = args.split or ("+".join(Path(f).stem for f in args.split_file) or f"{Path(args.corpus).name} (all)")
    info = {
        "mode": "corpus",
        "corpus": str(args.corpus),
        "split": split,
        "enroll": args.enroll,
        "by_label": args.by_label,
        "seed": args.seed,
        "speakers_left_out": left_out,
    }
    return trials, info


def run(args: argparse.Namespace) -> int:
    from ge2e.evaluate import EmbeddingStore, EvalOptions, evaluate, list_trials, model_fingerprint, write_outputs

    check_output(args, args.out, folder=True)  # before hours of embedding, not after
    model = open_model(args)
    if args.trials:
        trials = list_trials(args.trials, args.root)
        info = {"mode": "trials", "trials_file": str(args.trials), "split": args.split or Path(args.trials).stem}
    else:
        trials, info = _corpus_trials(args)
    out = Path(args.out)
    store = EmbeddingStore(None if args.no_store else out / "embeddings.npz", model_fingerprint(model))
    options = EvalOptions(
        norm=args.norm,
        cohort_cache=args.cohort_cache,
        cohort_splits=args.cohort_splits,
        top_n=args.top_n,
        features=args.features,
        progress=not args.no_progress,
    )
    report, scored = evaluate(model, trials, store, options)
    store.save()
    report = {"model": args.model or "bundled", **info, **report, "embeddings_reused": store.reused}
    # the calibrated threshold is on raw cosine scores: it says nothing about S-norm or AS-norm scores
    calibrated = model.calibration["threshold"] if model.calibration and args.norm == "none" else None
    if calibrated is not None:
        from ge2e.metrics import error_rates

        fa, miss = error_rates(scored.scores, scored.labels, calibrated)
        report.update(calibrated_threshold=calibrated, calibrated_false_accept_rate=fa, calibrated_miss_rate=miss)
    write_outputs(out, report, scored, title=info["split"], calibrated=calibrated)
    if args.json:  # the report as written, so that the two never differ
        print_json(json.loads((out / "report.json").read_text()))
    text = human_stream(args)
    scoring = "raw cosine scores" if args.norm == "none" else f"{args.norm} scores"
    print(
        f"{info['split']}: EER {100 * report['eer']:.2f}% (at {report['eer_threshold']:.3f} on these trials)  "
        f"minDCF(0.01) {report['min_dcf_0.01']:.3f}  minDCF(0.05) {report['min_dcf_0.05']:.3f}  "
        f"on {report['n_trials']} trials ({scoring})",
        file=text,
    )
    if calibrated is not None:
        print(
            f"at the model's calibrated threshold {calibrated:.3f} (what verify uses): "
            f"{100 * report['calibrated_false_accept_rate']:.1f}% false accepts, "
            f"{100 * report['calibrated_miss_rate']:.1f}% misses",
            file=text,
        )
    if report["skipped_trials"]:
        print(
            f"skipped {report['skipped_trials']} trial(s): {len(report['bad_files'])} file(s) could not be used",
            file=text,
        )
        for path, problem in list(report["bad_files"].items())[:10]:
            print(f"  {path}: {problem}", file=text)
    print(f"report: {out / 'report.json'}", file=text)
    return 0

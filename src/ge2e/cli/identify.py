"""``ge2e identify --enroll DIR | --embeddings NPZ --test AUDIO...``: which enrolled speaker said it, top-k with
scores; the CLI twin of :func:`ge2e.identify`."""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ge2e.cli._model import add_model_options, open_model, short_speech_line, threshold_origin_line
from ge2e.cli._output import add_output_options, human_stream, note, print_json
from ge2e.cli._preflight import report_skipped
from ge2e.cli.embed import add_speaker_level_option
from ge2e.errors import Ge2eError, printable

if TYPE_CHECKING:
    from ge2e.inference import Encoder


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "identify",
        help="rank enrolled speakers by their score against test utterances (top-k)",
        description="Enroll every speaker of a folder of audio files (speakers named as its corpus layout names "
        "them, e.g. <speaker>/<utterance> or LibriSpeech's <speaker>/<chapter>/<utterance>; the d-vectors of a "
        "speaker's utterances are averaged), or read the d-vectors of such a folder from a `ge2e embed` .npz, then "
        "rank the speakers for each test utterance by cosine score. The best match is accepted when its score "
        "reaches the threshold (default: the model's calibrated one); below it the speaker is reported as unknown. "
        "Where the threshold came from is a note on stderr (--quiet drops it).",
    )
    enrolled = p.add_mutually_exclusive_group(required=True)
    enrolled.add_argument("--enroll", metavar="DIR", help="folder with one subfolder of utterances per speaker")
    enrolled.add_argument(
        "--embeddings", metavar="NPZ", help="`ge2e embed DIR` output of such a folder: rows grouped by speaker"
    )
    p.add_argument("--test", nargs="+", required=True, metavar="AUDIO", help="utterance(s) to identify")
    p.add_argument("--top", type=int, default=5, metavar="K", help="candidates printed per test utterance (5)")
    add_model_options(p)
    p.add_argument("--threshold", type=float, help="accept the best match at or above this score (default: calibrated)")
    add_speaker_level_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_output_options(p)
    p.set_defaults(func=run)


def speaker_vectors(paths: Sequence[str], embeddings: np.ndarray, level: int | None = None) -> dict[str, np.ndarray]:
    """Speaker (as :func:`ge2e.data.readers.speaker_names` names it) -> the normalised mean of its rows: the
    paper's enrollment."""
    from ge2e.data.readers import speaker_names
    from ge2e.inference import average_embeddings

    rows: dict[str, list[np.ndarray]] = defaultdict(list)
    for name, row in zip(speaker_names(paths, level), embeddings, strict=True):
        rows[name].append(row)
    return {name: average_embeddings(vectors) for name, vectors in sorted(rows.items())}


def read_embeddings(path: str) -> tuple[list[str], np.ndarray]:
    """``paths`` and ``embeddings`` of a ``ge2e embed`` file; one line naming the file when it is not one."""
    try:
        with np.load(path) as npz:
            return [str(p) for p in npz["paths"]], np.asarray(npz["embeddings"], dtype=np.float32)
    except FileNotFoundError:
        raise Ge2eError(f"{printable(path)}: no such file") from None
    except (OSError, ValueError, KeyError) as exc:
        raise Ge2eError(f"{printable(path)}: not an embeddings file of `ge2e embed` ({exc})") from None


def enrolled_speakers(args: argparse.Namespace, model: Encoder) -> dict[str, np.ndarray]:
    from ge2e.cli.embed import collect_audio

    if args.embeddings:
        paths, embeddings = read_embeddings(args.embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] != model.embedding_size:
            raise Ge2eError(
                f"{printable(args.embeddings)}: embeddings of shape {embeddings.shape}, but the model gives "
                f"{model.embedding_size} values; embed the folder with the same --model"
            )
    else:
        result = model.embed_files(collect_audio([args.enroll]), progress=not args.no_progress)
        report_skipped(result.errors, human_stream(args))
        paths, embeddings = result.paths, result.embeddings
    if not paths:
        raise Ge2eError(f"{printable(args.enroll or args.embeddings)}: no usable enrollment utterance")
    return speaker_vectors(paths, embeddings, args.speaker_level)


def run(args: argparse.Namespace) -> int:
    from ge2e.api import default_threshold, identify

    if args.top < 1:
        raise Ge2eError(f"--top must be >= 1, got {args.top}")
    model = open_model(args)
    threshold = args.threshold
    if threshold is None and getattr(model, "calibration", None):
        threshold = default_threshold(model)
    speakers = enrolled_speakers(args, model)
    answers = []
    for test in args.test:
        matches = identify(test, speakers, model)
        best = matches[0]
        accepted = threshold is not None and best.score >= threshold
        answers.append(
            {
                "test": test,
                "speaker": best.speaker if accepted else None,
                "best_match": best.speaker,
                "score": best.score,
                "accepted": accepted,
                "speech_seconds": best.speech_seconds,
                "short": best.short,
                "top": [{"speaker": m.speaker, "score": m.score} for m in matches[: args.top]],
            }
        )
        if not args.json:
            print_answer(answers[-1], threshold)
    origin = (
        "no threshold: the model is not calibrated (ge2e calibrate) and --threshold was not given"
        if threshold is None
        else threshold_origin_line(model, args.threshold)
    )
    if args.json:
        print_json({"threshold": threshold, "threshold_origin": origin, "speakers": len(speakers), "results": answers})
    note(args, origin)
    return 0


def print_answer(answer: dict, threshold: float | None) -> None:
    """The text form of one test file's ranking: the verdict line, then the top candidates."""
    best, score = answer["best_match"], answer["score"]
    if threshold is None:
        verdict = f"best match {best} (ranking only: no threshold)"
    elif answer["accepted"]:
        verdict = f"{best}: score {score:.3f} >= threshold {threshold:.3f}"
    else:
        verdict = f"unknown speaker: best match {best}, score {score:.3f} < threshold {threshold:.3f}"
    print(f"{printable(answer['test'])}: {verdict}")
    if answer["short"]:
        print(f"  {short_speech_line(answer['speech_seconds'])}")
    for rank, match in enumerate(answer["top"], 1):
        print(f"  {rank}. {match['speaker']}  {match['score']:.3f}")

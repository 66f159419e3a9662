"""``ge2e verify --enroll A.wav [B.wav ...] --test C.wav [D.wav ...]``: same speaker or not, with the score and
threshold; exit status 0 when every test file is accepted, 1 when one is rejected, 2 on an error (as ``grep``).

A test file that cannot be used does not stop the others: each is named on one error line, the rest are decided,
and the exit status is 2 (a script must not read "all decided" from 0 or 1 when a file was never scored)."""

from __future__ import annotations

import argparse
import sys

from ge2e.cli._model import add_model_options, open_model, short_speech_line, threshold_origin_line
from ge2e.cli._output import add_output_options, note, print_json
from ge2e.errors import AudioError, printable

ACCEPT, REJECT, ERROR = 0, 1, 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="decide whether test utterances are spoken by the enrolled speaker",
        description="Enroll a speaker from one or more utterances (their d-vectors are averaged), score each test "
        "utterance by cosine similarity and accept it when the score reaches the threshold (default: the "
        "model's threshold calibrated on the development speakers, see docs/model.md). Exit status: 0 every test "
        "utterance accepted, 1 one or more rejected, 2 an error (a file without speech, corrupt, ...): a test "
        "file that cannot be used is named on one line and the others are still decided, exit 2. A test "
        "utterance with little speech (a digit, a keyword) is scored and flagged short: such scores err far more "
        "often. Where the threshold came from is a note on stderr (--quiet drops it).",
    )
    p.add_argument("--enroll", nargs="+", required=True, metavar="AUDIO", help="enrollment utterance(s)")
    p.add_argument("--test", nargs="+", required=True, metavar="AUDIO", help="the utterance(s) to verify")
    add_model_options(p)
    p.add_argument("--threshold", type=float, help="decision threshold on the cosine score (default: calibrated)")
    add_output_options(p)
    p.set_defaults(func=run, error_status=ERROR)


def run(args: argparse.Namespace) -> int:
    from ge2e.api import default_threshold, embed_speaker, verify

    model = open_model(args)
    threshold = default_threshold(model) if args.threshold is None else args.threshold  # no threshold: stop now
    enrolled = embed_speaker(args.enroll, model)  # once, however many test files; unusable: nothing to decide
    results, skipped = [], {}
    for test in args.test:
        try:
            results.append((test, verify(enrolled, test, model, threshold=threshold)))
        except AudioError as exc:  # one unusable test file: say so, decide the others, exit ERROR at the end
            skipped[test] = exc.problem
            print(f"ge2e verify: error: {exc}", file=sys.stderr)
    origin = threshold_origin_line(model, args.threshold)
    every_accepted = bool(results) and not skipped and all(r.same_speaker for _, r in results)
    if args.json:
        print_json(
            {
                "same_speaker": every_accepted,
                "threshold": threshold,
                "threshold_origin": origin,
                "enroll": args.enroll,
                "results": [
                    {
                        "test": test,
                        "same_speaker": r.same_speaker,
                        "score": r.score,
                        "speech_seconds": r.speech_seconds,
                        "short": r.short,
                    }
                    for test, r in results
                ],
                "skipped": skipped,
            }
        )
    for test, r in [] if args.json else results:
        decision = "same speaker" if r.same_speaker else "different speaker"
        relation = ">=" if r.same_speaker else "<"
        named = f"{printable(test)}: " if len(args.test) > 1 else ""
        print(f"{named}{decision}: score {r.score:.3f} {relation} threshold {r.threshold:.3f}")
        if r.short:
            print(short_speech_line(r.speech_seconds))
    if results:
        note(args, origin)
    if skipped:
        return ERROR
    return ACCEPT if every_accepted else REJECT

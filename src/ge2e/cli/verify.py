"""``ge2e verify --enroll A.wav [B.wav ...] --test C.wav``: same speaker or not, with the score and threshold."""

from __future__ import annotations

import argparse

from ge2e.cli._model import add_model_options, open_model, short_speech_line, threshold_origin_line


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="decide whether a test utterance is spoken by the enrolled speaker",
        description="Enroll a speaker from one or more utterances (their d-vectors are averaged), score the test "
        "utterance by cosine similarity and accept it when the score reaches the threshold (default: the "
        "model's threshold calibrated on the development speakers, see docs/model.md). Exit status 0 whatever "
        "the decision; 1 when a file cannot be used (no speech, corrupt, ...). A test utterance with little speech (a "
        "digit, a keyword) is scored and flagged short: such scores err far more often.",
    )
    p.add_argument("--enroll", nargs="+", required=True, metavar="AUDIO", help="enrollment utterance(s)")
    p.add_argument("--test", required=True, metavar="AUDIO", help="the utterance to verify")
    add_model_options(p)
    p.add_argument("--threshold", type=float, help="decision threshold on the cosine score (default: calibrated)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ge2e.api import verify

    model = open_model(args)
    result = verify(args.enroll, args.test, model, threshold=args.threshold)
    decision = "same speaker" if result.same_speaker else "different speaker"
    relation = ">=" if result.same_speaker else "<"
    print(f"{decision}: score {result.score:.3f} {relation} threshold {result.threshold:.3f}")
    print(threshold_origin_line(model, args.threshold))
    if result.short:
        print(short_speech_line(result.speech_seconds))
    return 0

"""``ge2e search --enroll A.wav B.wav --in meeting.wav --out alice.rttm``: where does this speaker talk?"""

from __future__ import annotations

import argparse
from pathlib import Path

from ge2e.cli._model import add_model_options, open_model
from ge2e.cli._output import add_output_options, human_stream, note, print_json
from ge2e.cli._preflight import MATPLOTLIB_HINT, add_mkdir_option, check_output, require_module
from ge2e.errors import Ge2eError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="where one enrolled speaker talks in a recording, as RTTM",
        description="Speaker search: the recording's speech segments (the diarization front end: VAD, speech "
        "regions cut into pieces of at most 3 s) are scored against the speaker enrolled from --enroll; the "
        "segments at or above the threshold (default: calibrated on the dev conversations, docs/diarization.md), "
        "touching ones merged, are written as RTTM turns of that speaker.",
    )
    p.add_argument("--enroll", nargs="+", required=True, metavar="AUDIO", help="enrollment recording(s) of the speaker")
    p.add_argument("--in", dest="recording", required=True, metavar="AUDIO", help="the recording to search")
    p.add_argument("--out", required=True, metavar="RTTM", help="output RTTM file (the regions found)")
    add_mkdir_option(p)
    p.add_argument("--name", help="the speaker's name in the RTTM file (default: the first --enroll file's name)")
    p.add_argument(
        "--threshold", type=float, metavar="T", help="a segment is the speaker's when its cosine >= T (default: tuned)"
    )
    p.add_argument("--plot", action="store_true", help="also draw the score over time, as a PNG next to the RTTM file")
    add_model_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ge2e.diarization import Segment, write_rttm
    from ge2e.diarization.search import search, search_threshold

    if args.threshold is not None and not -1.0 <= args.threshold <= 1.0:
        raise Ge2eError(f"--threshold must be a cosine score in [-1, 1], got {args.threshold}")
    out = check_output(args, args.out) / Path(args.out).name  # before any embedding
    if args.plot:
        require_module("matplotlib", MATPLOTLIB_HINT)
    recording = Path(args.recording)
    uri = "_".join(recording.stem.split()) or "audio"
    name = "_".join((args.name or Path(args.enroll[0]).stem).split()) or "speaker"
    model = open_model(args)
    threshold = search_threshold(model) if args.threshold is None else args.threshold
    found = search(args.enroll, recording, model, threshold=threshold)
    if args.threshold is None:
        note(args, f"threshold {threshold:.2f}: the model's search threshold (docs/diarization.md); --threshold T")
    write_rttm({uri: [Segment(r.start, r.end, name) for r in found.regions]}, out)
    seconds = sum(r.duration for r in found.regions)
    text = human_stream(args)
    print(
        f"{recording}: {name} found in {len(found.regions)} region(s), {seconds:.1f} s of {found.speech_s:.1f} s of "
        f"speech (threshold {found.threshold:.2f}); wrote {out}",
        file=text,
    )
    for r in found.regions:
        print(f"{r.start:8.2f} {r.end:8.2f}  score {r.score:.3f}", file=text)
    if args.plot:
        from ge2e.diarization.plot import plot_search

        png = out.with_suffix(".png")
        plot_search(found, png, title=f"{name} in {recording.name}")
        print(f"plot: {png}", file=text)
    if args.json:
        as_list = lambda regions: [{"start": r.start, "end": r.end, "score": r.score} for r in regions]  # noqa: E731
        print_json(
            {
                "recording": str(recording),
                "speaker": name,
                "rttm": str(out),
                "threshold": found.threshold,
                "duration_s": found.duration_s,
                "speech_s": found.speech_s,
                "regions": as_list(found.regions),
                "segments": as_list(found.segments),
            }
        )
    return 0

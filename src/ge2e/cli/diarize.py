"""``ge2e diarize AUDIO... --out out.rttm``: who spoke when; ``ge2e diarize-eval REF HYP``: diarization error rate."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ge2e.cli._model import add_model_options, open_model
from ge2e.cli._output import add_output_options, human_stream, print_json
from ge2e.cli._preflight import add_mkdir_option, check_output
from ge2e.diarization.clustering import METHODS, tuned
from ge2e.errors import Ge2eError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diarize",
        help="who spoke when: speaker turns of recordings as RTTM",
        description="Speaker diarization: VAD, d-vectors of 1.6 s windows every 0.4 s of speech, clustering of "
        "speech segments (the number of speakers estimated unless given), HMM resegmentation, turns of at least "
        "--min-duration written as RTTM (one line per turn; the file id is the audio file name without extension).",
    )
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="recording(s); several go into one RTTM file")
    p.add_argument("--out", required=True, metavar="RTTM", help="output RTTM file")
    add_mkdir_option(p)
    p.add_argument("--num-speakers", type=int, metavar="K", help="the number of speakers, when known")
    p.add_argument("--min-speakers", type=int, metavar="A", help="at least A speakers (default 1)")
    p.add_argument("--max-speakers", type=int, metavar="B", help="at most B speakers (default 10)")
    p.add_argument(
        "--method",
        choices=METHODS,
        help=f"clustering and speaker counting (default {tuned().method}, the best on dev; docs/diarization.md)",
    )
    p.add_argument(
        "--min-speaker-speech",
        type=float,
        metavar="S",
        help=f"when the count is estimated, the least seconds of speech a speaker needs (default "
        f"{tuned().silhouette_min_s:g}, tuned on dev); lower it when someone says only a few words",
    )
    add_model_options(p)
    p.add_argument("--window", type=float, default=1.6, metavar="S", help="d-vector window in seconds (default 1.6)")
    p.add_argument("--step", type=float, default=0.4, metavar="S", help="window hop in seconds (default 0.4)")
    p.add_argument(
        "--min-duration", type=float, default=0.25, metavar="S", help="shortest speaker turn in seconds (default 0.25)"
    )
    p.add_argument("--plot", action="store_true", help="also draw a timeline PNG next to the RTTM file")
    add_output_options(p, quiet=False)
    p.set_defaults(func=run)

    e = sub.add_parser(
        "diarize-eval",
        help="diarization error rate of hypothesis RTTMs against references",
        description="DER (missed speech + false alarm + speaker confusion, over reference speech) with "
        "pyannote.metrics, without a collar and with a forgiveness collar of COLLAR seconds on each side of every "
        "reference boundary (NIST md-eval convention). REF and HYP are RTTM files or folders of *.rttm files; "
        "recordings are matched by file id, and a reference with no hypothesis counts as all missed.",
    )
    e.add_argument("ref", metavar="REF_DIR", help="reference RTTM folder or file")
    e.add_argument("hyp", metavar="HYP_DIR", help="hypothesis RTTM folder or file")
    e.add_argument("--collar", type=float, default=0.25, help="collar in seconds per side (default 0.25)")
    e.add_argument("--per-file", action="store_true", help="also print the DER of every recording")
    e.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    e.set_defaults(func=run_eval)


def _uri(path: Path) -> str:
    return "_".join(path.stem.split()) or "audio"


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ge2e.diarization import DiarizationConfig, embed_speech, write_rttm
    from ge2e.diarization.pipeline import diarize_speech, speaker_range
    from ge2e.errors import AudioError

    lo, hi = speaker_range(args.num_speakers, args.min_speakers, args.max_speakers)
    # the count is right for 60% of the 2-4 speaker test conversations (docs/diarization.md): say when it is a guess
    guessed = " (estimated; --num-speakers K sets it, --min-speaker-speech S finds quieter speakers)" if lo < hi else ""
    try:
        cfg = DiarizationConfig(window_s=args.window, step_s=args.step, min_duration_s=args.min_duration)
    except ValueError as exc:
        raise Ge2eError(str(exc)) from None
    least = args.min_speaker_speech
    override = {} if least is None else {"silhouette_min_s": least, "min_speaker_s": least}
    try:
        replace(tuned(), **override)  # checked before the model loads
    except ValueError:
        raise Ge2eError(f"--min-speaker-speech must be a number of seconds >= 0, got {least}") from None
    paths = [Path(a) for a in args.audio]
    uris = [_uri(p) for p in paths]
    if len(set(uris)) < len(uris):
        raise Ge2eError("several inputs have the same file name; RTTM file ids must be unique")
    out = check_output(args, args.out) / Path(args.out).name  # before any embedding
    model = open_model(args)
    tuning = replace(tuned(model), **override)  # the settings tuned for this model, or the untuned defaults
    text = human_stream(args)
    results, failed, summary = {}, {}, {}
    for path, uri in zip(paths, uris, strict=True):
        try:
            speech = embed_speech(model, path, cfg=cfg)
            segments = diarize_speech(
                speech, args.num_speakers, args.min_speakers, args.max_speakers, args.method, cfg, tuning
            )
        except AudioError as exc:
            if len(paths) == 1:
                raise
            failed[str(path)] = exc.problem
            print(f"skipped {exc}", file=sys.stderr)
            continue
        results[uri] = segments
        speakers = len({s.speaker for s in segments})
        summary[uri] = {
            "path": str(path),
            "speakers": speakers,
            "estimated": bool(guessed),
            "speech_s": speech.speech_s,
            "turns": [{"start": s.start, "end": s.end, "speaker": s.speaker} for s in segments],
        }
        print(
            f"{path}: {speakers} speaker(s){guessed}, {len(segments)} turns, {speech.speech_s:.1f} s of speech",
            file=text,
        )
        if args.plot:
            from ge2e.diarization.plot import plot_timeline

            png = out.with_suffix(".png") if len(paths) == 1 else out.with_name(f"{out.stem}.{uri}.png")
            plot_timeline({args.method or tuning.method: segments}, png, title=str(path), duration=speech.duration_s)
            print(f"timeline: {png}", file=text)
    if results:
        write_rttm(results, out)
        print(f"wrote {out} ({len(results)} recording(s))", file=text)
    if args.json:
        print_json({"rttm": str(out) if results else None, "recordings": summary, "skipped": failed})
    if failed:
        print(f"skipped {len(failed)} of {len(paths)} file(s)", file=sys.stderr)
    return 0 if results else 1


def run_eval(args: argparse.Namespace) -> int:
    from ge2e.diarization.evaluate import der, read_rttm_dir

    if args.collar < 0:
        raise Ge2eError(f"collar must be >= 0, got {args.collar}")
    refs, hyps = read_rttm_dir(args.ref), read_rttm_dir(args.hyp)
    missing = sorted(set(refs) - set(hyps))
    extra = sorted(set(hyps) - set(refs))
    if missing:
        print(f"warning: no hypothesis for {len(missing)} recording(s), scored as missed: {', '.join(missing[:5])}")
    if extra:
        print(f"warning: {len(extra)} hypothesis recording(s) not in the references, ignored: {', '.join(extra[:5])}")
    collars = sorted({0.0, args.collar})
    results = [der(refs, hyps, collar) for collar in collars]
    print(f"{len(refs)} recording(s), {results[0].total:.1f} s of reference speech")
    print(f"{'collar':>8} {'DER':>7} {'missed':>7} {'FA':>7} {'conf':>7}")
    for r in results:
        parts = [r.der, r.missed / r.total, r.false_alarm / r.total, r.confusion / r.total] if r.total else [0.0] * 4
        print(f"{r.collar:7.2f}s " + " ".join(f"{100 * x:6.2f}%" for x in parts))
    if args.per_file:
        width = max(len("recording"), *map(len, refs))
        print(f"{'recording':<{width}} " + " ".join(f"{f'DER@{r.collar:g}s':>7}" for r in results))
        for uri in sorted(refs):
            print(f"{uri:<{width}} " + " ".join(f"{100 * r.per_file[uri]:6.2f}%" for r in results))
    if args.json:
        _write_json(args.json, [_as_dict(r) for r in results])
    return 0


def _as_dict(result: Any) -> dict[str, Any]:
    return {
        "collar_s": result.collar,
        "der": result.der,
        "scored_s": result.total,
        "missed_s": result.missed,
        "false_alarm_s": result.false_alarm,
        "confusion_s": result.confusion,
        "per_file": result.per_file,
    }


def _write_json(path: str, data: Any) -> None:
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(target)

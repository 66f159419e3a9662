"""Diarization benchmark: DER by number of speakers, spectral clustering vs k-means, with and without a collar.

    nice -n 15 .venv/bin/python recipes/diarization/run.py [--model PT] [--per-count 10]

1. Builds (or reuses) two evaluation sets of synthetic conversations of LibriSpeech TEST speakers
   (make_eval_set.py): ``clean`` (pauses between turns) and ``noisy`` (also 20% overlapping turns and coloured
   background noise at 10-20 dB SNR), 2 to 6 speakers, ``--per-count`` conversations per speaker count.
2. Embeds every conversation once (VAD + 1.6 s d-vector windows every 0.4 s) and clusters the windows four
   ways: spectral and k-means, each with the number of speakers estimated (1-10) or given (oracle).
3. Scores DER with pyannote.metrics without a collar and with a 0.25 s collar per side; writes hypothesis
   RTTMs under ``<out>/<set>/hyp/<system>/``, ``<out>/results.json``, the results table between the
   diarization markers of docs/results.md, and docs/img/diarization_example.png.

No setting was tuned on these conversations: window, step and clustering options are the defaults of
ge2e.diarization (Wang et al. 2018 and spectralcluster's published configurations).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_eval_set import REPO, build, data_root, test_speaker_files

from ge2e.diarization import embed_speech, load_encoder, read_rttm, write_rttm
from ge2e.diarization.evaluate import COLLARS, der
from ge2e.diarization.pipeline import diarize_speech
from ge2e.diarization.plot import plot_timeline
from ge2e.diarization.simulate import ConversationConfig, load_sources

CHECKPOINTS = (REPO / "src/ge2e/pretrained/ge2e_small.pt", REPO / "exp/shared_ti_small/best.pt")
SETS = {
    "clean": ConversationConfig(),
    "noisy": ConversationConfig(overlap_prob=0.2, snr_db=(10.0, 20.0)),
}
SET_DESCRIPTION = {
    "clean": "pauses of 0.2-1 s between turns",
    "noisy": "as clean, plus 20% of turns overlapping the previous one by 0.3-1 s and coloured noise at 10-20 dB SNR",
}
# (label, method, oracle number of speakers)
SYSTEMS = (
    ("spectral", "spectral", False),
    ("spectral, oracle K", "spectral", True),
    ("k-means", "kmeans", False),
    ("k-means, oracle K", "kmeans", True),
)
MARK_START, MARK_END = "<!-- diarization:start -->", "<!-- diarization:end -->"
EXAMPLE = ("clean", "k3_00")


def default_model() -> Path:
    for path in CHECKPOINTS:
        if path.exists():
            return path
    raise SystemExit(f"no trained model: none of {', '.join(map(str, CHECKPOINTS))}; pass --model")


def ensure_set(out: Path, cfg: ConversationConfig, counts: list[int], per_count: int, seed: int, sources) -> dict:
    """Reuse ``out`` when its manifest matches these settings, else (re)generate it."""
    wanted = [f"k{k}_{i:02d}" for k in counts for i in range(per_count)]
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        same = manifest.get("seed") == seed and manifest.get("config") == json.loads(json.dumps(asdict(cfg)))
        if same and [c["uri"] for c in manifest["conversations"]] == wanted:
            return manifest
    return build(out, counts, per_count, cfg, seed, sources())


def evaluate_set(model, folder: Path, manifest: dict) -> tuple[dict, float, float]:
    """Diarize every conversation with every system -> ({system: {uri: segments}}, audio s, compute s)."""
    hyps: dict[str, dict] = {label: {} for label, _, _ in SYSTEMS}
    audio_s = compute_s = 0.0
    for conv in manifest["conversations"]:
        uri, k = conv["uri"], len(conv["speakers"])
        t0 = time.perf_counter()
        speech = embed_speech(model, folder / "wav" / f"{uri}.wav")
        for label, method, oracle in SYSTEMS:
            segments = diarize_speech(speech, num_speakers=k if oracle else None, method=method)
            hyps[label][uri] = segments
            write_rttm({uri: segments}, folder / "hyp" / label.replace(", ", "_").replace(" ", "_") / f"{uri}.rttm")
        compute_s += time.perf_counter() - t0
        audio_s += speech.duration_s
        found = len({s.speaker for s in hyps["spectral"][uri]})
        print(f"{folder.name}/{uri}: {k} speakers, spectral found {found}", flush=True)
    return hyps, audio_s, compute_s


def score(refs: dict, hyps: dict, manifest: dict, counts: list[int]) -> dict:
    """{system: {"der": {collar: {K or "all": DER}}, "count_accuracy": {K or "all": fraction}}}."""
    by_k = {k: [c["uri"] for c in manifest["conversations"] if len(c["speakers"]) == k] for k in counts}
    groups = {**{str(k): uris for k, uris in by_k.items()}, "all": [u for uris in by_k.values() for u in uris]}
    table = {}
    for label, _, oracle in SYSTEMS:
        entry: dict = {"der": {}}
        for collar in COLLARS:
            entry["der"][str(collar)] = {
                g: der({u: refs[u] for u in uris}, hyps[label], collar).der for g, uris in groups.items()
            }
        if not oracle:
            entry["count_accuracy"] = {
                g: sum(len({s.speaker for s in hyps[label][u]}) == len({s.speaker for s in refs[u]}) for u in uris)
                / len(uris)
                for g, uris in groups.items()
            }
        table[label] = entry
    return table


def markdown(results: dict, counts: list[int]) -> str:
    model = results["model"]
    lines = [
        MARK_START,
        "## Speaker diarization",
        "",
        f"Model `{model['path']}` ({model['meta']}). Evaluation sets: synthetic conversations of the official "
        f"**LibriSpeech.test** speakers (10 speakers never seen in training), {results['per_count']} conversations "
        f"per speaker count, {results['turns_per_speaker']} turns per speaker, seed {results['seed']}. "
        "DER in % (missed + false alarm + confusion), pooled over the conversations of each column; collar in "
        "seconds on each side of every reference boundary. Spectral: refined-affinity spectral clustering "
        "(spectralcluster), number of speakers from the eigengap (1-10) unless oracle. k-means: baseline, number "
        "of speakers by silhouette (2-10) unless oracle. Produced by `recipes/diarization/run.py` "
        f"({results['date']}).",
        "",
    ]
    for name, info in results["sets"].items():
        lines += [
            f"**{name}** ({SET_DESCRIPTION[name]}; {info['hours']:.2f} h of audio):",
            "",
            "| system | collar | " + " | ".join(f"{k} spk" for k in counts) + " | all |",
            "|---|---|" + "---|" * (len(counts) + 1),
        ]
        for label, entry in info["table"].items():
            for collar, row in entry["der"].items():
                cells = " | ".join(f"{100 * row[str(k)]:.1f}" for k in counts)
                lines.append(f"| {label} | {float(collar):.2f} | {cells} | {100 * row['all']:.1f} |")
        for label, entry in info["table"].items():
            if "count_accuracy" in entry:
                acc = entry["count_accuracy"]
                cells = " | ".join(f"{100 * acc[str(k)]:.0f}%" for k in counts)
                lines.append(f"| {label}: speaker count right | | {cells} | {100 * acc['all']:.0f}% |")
        lines += [
            "",
            f"Whole pipeline (VAD, d-vectors, four clusterings) at {info['compute_s'] / info['audio_s']:.3f} x "
            f"real time on {results['machine']}.",
            "",
        ]
    lines += ["![diarization example](img/diarization_example.png)", "", MARK_END]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace the text between the diarization markers (or create the file with a title and the section)."""
    text = path.read_text() if path.exists() else "# Results\n\n"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        text = head + section + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="checkpoint (default: the bundled model, else exp/shared_ti_small)")
    p.add_argument("--out", type=Path, default=REPO / "exp" / "diarization")
    p.add_argument("--speakers", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    p.add_argument("--per-count", type=int, default=10)
    p.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--docs", type=Path, default=REPO / "docs", help="where results.md and img/ are updated")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    model_path = args.model or default_model()
    model = load_encoder(model_path)
    meta = getattr(model, "meta", {}) or {}
    meta_text = (
        ", ".join(
            f"{k} {meta[k]:.4g}" if isinstance(meta[k], float) else f"{k} {meta[k]}"
            for k in ("step", "val_eer", "best_val_eer")
            if k in meta
        )
        or "no metadata"
    )
    cached_sources: list = []

    def sources() -> list:
        if not cached_sources:
            cached_sources.extend(load_sources(test_speaker_files(data_root())))
        return cached_sources

    results = {
        "model": {
            "path": str(
                model_path.resolve().relative_to(REPO) if model_path.resolve().is_relative_to(REPO) else model_path
            ),
            "meta": meta_text,
        },
        "per_count": args.per_count,
        "turns_per_speaker": ConversationConfig().turns_per_speaker,
        "seed": args.seed,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} CPU, 1 torch thread, shared and niced",
        "sets": {},
    }
    example = None
    for name in args.sets:
        folder = args.out / name
        manifest = ensure_set(folder, SETS[name], args.speakers, args.per_count, args.seed, sources)
        refs = {c["uri"]: read_rttm(folder / "ref" / f"{c['uri']}.rttm")[c["uri"]] for c in manifest["conversations"]}
        hyps, audio_s, compute_s = evaluate_set(model, folder, manifest)
        results["sets"][name] = {
            "table": score(refs, hyps, manifest, args.speakers),
            "audio_s": audio_s,
            "compute_s": compute_s,
            "hours": audio_s / 3600,
        }
        if name == EXAMPLE[0] and EXAMPLE[1] in refs:
            uri = EXAMPLE[1]
            example = {"reference": refs[uri], "spectral": hyps["spectral"][uri], "k-means": hyps["k-means"][uri]}
    out_json = args.out / "results.json"
    out_json.write_text(json.dumps(results, indent=1))
    section = markdown(results, args.speakers)
    print(section)
    args.docs.mkdir(parents=True, exist_ok=True)
    write_section(args.docs / "results.md", section)
    if example:
        plot_timeline(
            example,
            args.docs / "img" / "diarization_example.png",
            title=f"{EXAMPLE[0]}/{EXAMPLE[1]} (LibriSpeech.test speakers): reference vs estimated K",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

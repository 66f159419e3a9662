"""Diarization for one model: tune the speaker counting on DEV conversations, then the TEST table of the docs.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 .venv/bin/python recipes/diarization/tune.py --model PT

1. Builds (or reuses) ``exp/diarization/{dev,test}``: synthetic conversations of the official dev / test speakers
   of four shared corpora: 1 to 8 speakers, the one-speaker recordings as long as two-speaker conversations
   (make_eval_set.py).
2. Embeds every conversation once per model (VAD + 1.6 s d-vector windows every 0.4 s), cached under
   ``exp/diarization/cache/<model fingerprint>/<split>-<manifest digest>/`` (a rebuilt set never reuses them);
   Resemblyzer's d-vectors of the same windows are cached too.
3. On dev only, for each clustering level (speech segments, windows): the ``ahc`` threshold, the ``eigengap``
   percentile, the ``centroid`` cosine and minimum speech per speaker and the ``silhouette`` bonus, minimum
   speech per speaker and one-speaker cosine (the last two methods on segments only; windows reuse them) that
   give the lowest DER
   (0.25 s collar); then the method and level with the lowest DER become the default. Written beside the
   model's weights (``ge2e.pretrained.tuning_path``: ``src/ge2e/pretrained/ge2e_small.diarization.json`` for the
   bundled model, for both its forms), where ``load_model`` reads it for that model only.
4. On test: every method and level with the tuned settings, for the model and for Resemblyzer's d-vectors
   (its default level only); count accuracy,
   DER with missed / false alarm / confusion for 1, 2-4 and 5-8 speakers, real-time factor and load average; the
   project's DER checked against pyannote.metrics'. Written between the markers of docs/diarization.md, with
   ``exp/diarization/results.json`` and docs/img/diarization_example.png.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from make_eval_set import CONVERSATION, PER_COUNT, REPO, SPEAKER_COUNTS, build, data_root, split_sources

from ge2e.audio import load_audio
from ge2e.config import InferenceConfig
from ge2e.diarization import load_encoder, read_rttm
from ge2e.diarization.clustering import METHODS, Tuning
from ge2e.diarization.evaluate import DerResult, der, pyannote_der
from ge2e.diarization.pipeline import DiarizationConfig, SpeechWindows, diarize_speech, embed_speech, window_config
from ge2e.diarization.plot import plot_timeline
from ge2e.files import atomic_write
from ge2e.inference import model_fingerprint, normalize_average, windows
from ge2e.pretrained import bundled_model_path, file_sha256, read_tuning, tuning_path

OUT = REPO / "exp" / "diarization"
GROUPS = {"1": (1,), "2-4": (2, 3, 4), "5-8": (5, 6, 7, 8)}
AHC_THRESHOLDS = np.round(np.arange(0.05, 1.201, 0.025), 3)
EIGENGAP_PS = np.round(np.arange(0.80, 0.991, 0.01), 2)
CENTROID_COSINES = np.round(np.arange(0.50, 0.951, 0.025), 3)
MIN_SPEAKER_SECONDS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
SILHOUETTE_BONUSES = np.round(np.arange(0.0, 0.401, 0.025), 3)
ONE_SPEAKER_COSINES = np.round(np.arange(0.40, 0.951, 0.025), 3)
SILHOUETTE_AGAIN = (
    ("silhouette_bonus", SILHOUETTE_BONUSES),
    ("silhouette_min_s", MIN_SPEAKER_SECONDS),
    ("silhouette_bonus", SILHOUETTE_BONUSES),
)
RESEGMENT_SHARPNESSES = (0.0, 10.0, 20.0, 40.0)  # 0: no resegmentation
RESEGMENT_STAYS = (0.35, 0.5, 0.7)
LEVELS = {"segments": True, "windows": False}
COLLAR = 0.25
TARGET_COUNT_ACCURACY, TARGET_DER = 0.80, 0.15  # issue 15, 2-4 speakers
MARK_START, MARK_END = "<!-- diarization-table:start -->", "<!-- diarization-table:end -->"
EXAMPLE = "k4_00"
RESEMBLYZER_FRAME_SHIFT = 1  # its STFT frames are centred (i * hop); ours at i * hop + 200 samples


def ensure_set(split: str, per_count: int, seed: int) -> tuple[dict, dict]:
    """The split's manifest and ``{uri: reference segments}``, building the set when missing or different."""
    folder = OUT / split
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else None
    wanted = [f"k{k}_{i:02d}" for k in SPEAKER_COUNTS for i in range(per_count)]
    if manifest is None or [c["uri"] for c in manifest["conversations"]] != wanted or manifest["seed"] != seed:
        sources = split_sources(data_root(), split, seed)
        manifest = build(folder, split, list(SPEAKER_COUNTS), per_count, CONVERSATION, seed, sources)
    return manifest, references(folder, manifest)


def references(folder: Path, manifest: dict) -> dict:
    """``{uri: reference segments}`` of the set in ``folder``."""
    return {c["uri"]: read_rttm(folder / "ref" / f"{c['uri']}.rttm")[c["uri"]] for c in manifest["conversations"]}


def set_id(split: str, manifest: dict) -> str:
    """``<split>-<digest of the manifest>``: the embedding caches of a set, so a rebuilt set (another
    ``--per-count`` or seed) never reuses the d-vectors of the conversations it replaced under the same names."""
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:10]
    return f"{split}-{digest}"


def cache_name(fingerprint: str, cfg: DiarizationConfig | None = None) -> str:
    """The cache folder of a model's d-vectors: its fingerprint, ``-wmean`` when each window is normalised by
    its own mean (the default front end) rather than the recording's, and the segment length (the segments'
    own d-vectors depend on it)."""
    cfg = cfg or DiarizationConfig()
    return f"{fingerprint[:16]}{'-wmean' if cfg.window_mean else ''}-seg{cfg.segment_s:g}"


def save_speech(path: Path, speech: SpeechWindows, seconds: float) -> None:
    fields = {k: v for k, v in asdict(speech).items() if k != "name"}
    atomic_write(path, lambda f: np.savez(f, embed_s=seconds, **fields))


def load_speech(path: Path, name: str) -> tuple[SpeechWindows, float]:
    with np.load(path) as z:
        fields = {k: z[k] if z[k].ndim else z[k].item() for k in z.files}
    seconds = fields.pop("embed_s")
    return SpeechWindows(name=name, **fields), seconds


def embed_set(model, folder: Path, uris: list[str], cache: Path) -> dict[str, tuple[SpeechWindows, float]]:
    """``{uri: (windows, seconds it took to embed)}`` of the model for the set in ``folder``, from the cache or
    computed into it."""
    cache.mkdir(parents=True, exist_ok=True)
    result = {}
    for uri in uris:
        path = cache / f"{uri}.npz"
        if not path.exists():
            t0 = time.perf_counter()
            speech = embed_speech(model, folder / "wav" / f"{uri}.wav", name=uri)
            save_speech(path, speech, time.perf_counter() - t0)
            print(f"embedded {folder.name}/{uri}", flush=True)
        result[uri] = load_speech(path, uri)
    return result


def resemblyzer_set(
    split: str, speeches: dict[str, tuple[SpeechWindows, float]], cache: Path
) -> dict[str, tuple[SpeechWindows, float]]:
    """Resemblyzer's d-vectors of the very windows the model embedded (same VAD, same layout), cached; reused
    for another model when its windows are the same."""
    from resemblyzer_eer import import_resemblyzer

    cache.mkdir(parents=True, exist_ok=True)
    encoder = None
    result = {}
    for uri, (speech, _) in speeches.items():
        path = cache / f"{uri}.npz"
        if path.exists():
            cached, seconds = load_speech(path, uri)
            same = np.array_equal(cached.speech_frames, speech.speech_frames)
            if same and np.array_equal(cached.frame_segment, speech.frame_segment):
                result[uri] = (cached, seconds)
                continue
        if encoder is None:
            resemblyzer = import_resemblyzer()
            encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
        t0 = time.perf_counter()
        wav = resemblyzer.normalize_volume(load_audio(OUT / split / "wav" / f"{uri}.wav"), -30, increase_only=True)
        mel = resemblyzer.wav_to_mel_spectrogram(wav)  # (T, 40), 10 ms hop like the model's
        frames = torch.from_numpy(mel[np.minimum(speech.speech_frames + RESEMBLYZER_FRAME_SHIFT, len(mel) - 1)])
        cut = windows(frames, window_config(DiarizationConfig(), speech.frame_s, 64))
        pieces = frames.split(np.bincount(speech.frame_segment).tolist())
        with torch.no_grad():
            vectors = torch.cat([encoder(chunk) for chunk in cut.split(128)]).numpy()
            # each segment's own frames, windowed and averaged as the model's are (embed_mels)
            own = [normalize_average(encoder(windows(piece, InferenceConfig()))) for piece in pieces]
        windows_r = replace(speech, embeddings=vectors.astype(np.float32), segment_embeddings=torch.stack(own).numpy())
        seconds = time.perf_counter() - t0
        save_speech(path, windows_r, seconds)
        result[uri] = (windows_r, seconds)
    return result


def run(
    speeches: dict[str, tuple[SpeechWindows, float]], method: str, tuning: Tuning, truth: dict[str, int] | None = None
) -> tuple[dict, float]:
    """Diarize every conversation -> ``({uri: segments}, clustering seconds)``; ``truth`` gives the oracle count."""
    hyps, seconds = {}, 0.0
    for uri, (speech, _) in speeches.items():
        t0 = time.perf_counter()
        hyps[uri] = diarize_speech(speech, truth[uri] if truth else None, method=method, tuning=tuning)
        seconds += time.perf_counter() - t0
    return hyps, seconds


def count(segments) -> int:
    return len({s.speaker for s in segments})


def summary(refs: dict, hyps: dict, uris: list[str]) -> dict:
    """Count accuracy and DER parts (fractions of scored speech) over ``uris``, with 95% intervals: Wilson's for
    the count accuracy, a bootstrap over conversations for the DER."""
    from scipy.stats import binomtest

    # each conversation scored once: pooled here, resampled by der_interval
    files = [der({u: refs[u]}, hyps, COLLAR) for u in uris]
    scored = DerResult(COLLAR)
    for u, f in zip(uris, files, strict=True):
        scored.add(u, f.total, f.missed, f.false_alarm, f.confusion)
    right = sum(count(hyps[u]) == count(refs[u]) for u in uris)
    interval = binomtest(right, len(uris)).proportion_ci(method="wilson")
    return {
        "count_accuracy": right / len(uris),
        "count_accuracy_ci": [float(interval.low), float(interval.high)],
        "der": scored.der,
        "der_ci": der_interval(files),
        "der_no_collar": der({u: refs[u] for u in uris}, hyps, 0.0).der,
        "missed": scored.missed / scored.total,
        "false_alarm": scored.false_alarm / scored.total,
        "confusion": scored.confusion / scored.total,
    }


def der_interval(files: list[DerResult], draws: int = 2000) -> list[float]:
    """95% percentile-bootstrap interval of the pooled DER, resampling the conversations scored in ``files``."""
    errors = np.array([f.missed + f.false_alarm + f.confusion for f in files])
    totals = np.array([f.total for f in files])
    picks = np.random.default_rng(0).integers(0, len(files), size=(draws, len(files)))
    ders = errors[picks].sum(axis=1) / np.maximum(totals[picks].sum(axis=1), 1e-9)
    return np.percentile(ders, [2.5, 97.5]).tolist()


def grouped(refs: dict, hyps: dict) -> dict:
    by_group = {g: [u for u in refs if count(refs[u]) in ks] for g, ks in GROUPS.items()}
    return {g: summary(refs, hyps, uris) for g, uris in {**by_group, "all": list(refs)}.items()}


def tune(speeches: dict, refs: dict) -> tuple[Tuning, dict, dict[str, Tuning]]:
    """Dev: per level the best ``ahc`` threshold, ``eigengap`` percentile, ``centroid`` and ``silhouette`` settings,
    then the best method and level -> (tuning, comparison, {level: its tuning})."""

    @functools.cache  # coordinate descent and the centred/as-they-are choice revisit settings already scored
    def dev_der(method: str, tuning: Tuning) -> float:
        return der(refs, run(speeches, method, tuning)[0], COLLAR).der

    def best(method: str, tuning: Tuning, field: str, values) -> Tuning:
        value = min(values, key=lambda v: dev_der(method, replace(tuning, **{field: float(v)})))
        return replace(tuning, **{field: float(value)})

    levels: dict[str, Tuning] = {}
    for level in LEVELS:
        tuning = replace(Tuning(), segments=LEVELS[level])
        tuning = best("ahc", tuning, "ahc_threshold", AHC_THRESHOLDS)
        tuning = best("eigengap", tuning, "eigengap_p", EIGENGAP_PS)
        if LEVELS[level]:
            # coordinate descent: the cosine, the minimum speech per speaker, the cosine again
            tuning = best("centroid", tuning, "centroid_max_cos", CENTROID_COSINES)
            tuning = best("centroid", tuning, "min_speaker_s", MIN_SPEAKER_SECONDS)
            tuning = best("centroid", tuning, "centroid_max_cos", CENTROID_COSINES)
            tuning = best("silhouette", tuning, "silhouette_bonus", SILHOUETTE_BONUSES)
            tuning = best("silhouette", tuning, "silhouette_min_s", MIN_SPEAKER_SECONDS)
            tuning = best("silhouette", tuning, "one_speaker_cos", ONE_SPEAKER_COSINES)
            tuning = best("silhouette", tuning, "silhouette_bonus", SILHOUETTE_BONUSES)
            # centred d-vectors: their silhouettes lie on another scale, so the bonus and least speech again
            centred = replace(tuning, centred=True)
            for field, values in SILHOUETTE_AGAIN:
                centred = best("silhouette", centred, field, values)
            if dev_der("silhouette", centred) < dev_der("silhouette", tuning):
                tuning = centred
            # the resegmentation, on the counting rule that has been the default since it was added
            tuning = best("silhouette", tuning, "resegment_sharpness", RESEGMENT_SHARPNESSES)
            tuning = best("silhouette", tuning, "resegment_stay", RESEGMENT_STAYS)
        else:
            fields = (
                "centroid_max_cos",
                "min_speaker_s",
                "silhouette_bonus",
                "silhouette_min_s",
                "one_speaker_cos",
                "centred",
            )
            tuning = replace(tuning, **{f: getattr(levels["segments"], f) for f in fields})
        levels[level] = tuning
        print(f"dev {level}: {tuning}", flush=True)
    comparison = {
        f"{m}, {level}": grouped(refs, run(speeches, m, tuning)[0]) for level, tuning in levels.items() for m in METHODS
    }
    label = min(comparison, key=lambda k: (comparison[k]["all"]["der"], -comparison[k]["all"]["count_accuracy"]))
    method, level = label.split(", ")
    return replace(levels[level], method=method), comparison, levels


def level_name(tuning: Tuning) -> str:
    return "segments" if tuning.segments else "windows"


def evaluate(systems: dict, refs: dict, tunings: dict[str, Tuning], levels: dict[str, Tuning], audio_s: float) -> dict:
    """Test rows: every method on every embedding with that embedding's dev tuning at its default level (the
    model: at both levels), plus the model's default method with the oracle count."""
    truth = {u: count(r) for u, r in refs.items()}
    default = tunings["model"].method
    rows = {}
    for embedding, speeches in systems.items():
        embed_s = sum(s for _, s in speeches.values())
        tuning = tunings[embedding]
        level = level_name(tuning)
        runs = [(f"{m}, {level}", m, None, tuning) for m in METHODS]
        if embedding == "model":
            runs += [(f"{m}, {other}", m, None, t) for other, t in levels.items() if other != level for m in METHODS]
        runs += [(f"{default}, {level}, oracle count", default, truth, tuning)]
        for label, method, oracle, tuning in runs:
            hyps, cluster_s = run(speeches, method, tuning, oracle)
            groups = grouped(refs, hyps)
            check = max(abs(der(refs, hyps, c).der - pyannote_der(refs, hyps, c).der) for c in (0.0, COLLAR))
            rows[f"{embedding} / {label}"] = {
                "groups": groups,
                "rtf": (embed_s + cluster_s) / audio_s,
                "pyannote_max_abs_diff": check,
                "hyps": hyps,
            }
            print(f"test {embedding} / {label}: {groups['all']}", flush=True)
    return rows


def interval(bounds: list[float], digits: int) -> str:
    return f"{100 * bounds[0]:.{digits}f}-{100 * bounds[1]:.{digits}f}"


def table(rows: dict, groups: tuple[str, ...]) -> list[str]:
    lines = [
        "| embedding / method | group | speakers right (95% CI) | DER (95% CI) | missed | false alarm | confusion | "
        "DER, no collar |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, row in rows.items():
        for g in groups:
            r = row["groups"][g] if "groups" in row else row[g]
            lines.append(
                f"| {label} | {g} spk | {100 * r['count_accuracy']:.0f}% ({interval(r['count_accuracy_ci'], 0)}) | "
                f"{100 * r['der']:.1f}% ({interval(r['der_ci'], 1)}) | "
                f"{100 * r['missed']:.1f}% | {100 * r['false_alarm']:.1f}% | {100 * r['confusion']:.1f}% | "
                f"{100 * r['der_no_collar']:.1f}% |"
            )
    return lines


def reseg(t: dict) -> str:
    if not t["resegment_sharpness"]:
        return "no resegmentation"
    return f"resegmentation sharpness {t['resegment_sharpness']:g} and stay {t['resegment_stay']:g}"


def centring(t: dict) -> str:
    return ", on centred d-vectors" if t.get("centred") else ""


def markdown(results: dict) -> str:
    model, tuning, load = results["model"], results["tuning"]["model"], results["load_average"]
    others = "".join(
        f" ({name}'s d-vectors: threshold {t['ahc_threshold']}, percentile {t['eigengap_p']}, centroid cosine "
        f"{t['centroid_max_cos']} and {t['min_speaker_s']:g} s, silhouette bonus {t['silhouette_bonus']}, "
        f"{t['silhouette_min_s']:g} s and one-speaker cosine {t['one_speaker_cos']}{centring(t)}, {reseg(t)}, on "
        f"{'segments' if t['segments'] else 'windows'})"
        for name, t in results["tuning"].items()
        if name != "model"
    )
    level = "segments" if tuning["segments"] else "windows"
    default_label = f"model / {tuning['method']}, {level}"
    windows_t = results["levels"]["windows"]
    dev, test = results["sets"]["dev"], results["sets"]["test"]
    rtf = "; ".join(f"{label} {row['rtf']:.3f}" for label, row in results["test"].items() if "oracle" not in label)
    check = max(row["pyannote_max_abs_diff"] for row in results["test"].values())
    default = results["test"][default_label]["groups"]
    one, small, large = default["1"], default["2-4"], default["5-8"]
    met = small["count_accuracy"] >= TARGET_COUNT_ACCURACY and small["der"] < TARGET_DER
    return "\n".join(
        [
            MARK_START,
            f"Model `{model['path']}` (fingerprint `{model['fingerprint'][:12]}`, {model['meta']}); produced by "
            f"`recipes/diarization/tune.py` on {results['date']} in {results['minutes']:.0f} min. Conversations: "
            f"{dev['conversations']} of **dev** speakers ({dev['hours']:.2f} h) for tuning, {test['conversations']} "
            f"of **test** speakers ({test['hours']:.2f} h) for the test table; 1 to 8 speakers each (one-speaker "
            "recordings as long as two-speaker conversations, so the length does not tell). DER pooled over "
            f"the conversations of a group, collar {COLLAR} s on each side of every reference boundary (the last "
            "column without). In brackets, 95% intervals: Wilson's for the share of conversations counted right, "
            "a bootstrap over the group's conversations for the DER.",
            "",
            f"**Dev** (tuning; for the model on {level} the chosen `ahc` threshold is {tuning['ahc_threshold']}, "
            f"the `eigengap` percentile {tuning['eigengap_p']}, the `centroid` cosine {tuning['centroid_max_cos']} "
            f"with at least {tuning['min_speaker_s']:g} s per speaker, the `silhouette` bonus "
            f"{tuning['silhouette_bonus']} per ln(speakers) with at least {tuning['silhouette_min_s']:g} s per speaker "
            f"and one speaker from a centroid cosine of {tuning['one_speaker_cos']}{centring(tuning)}, {reseg(tuning)} "
            f"(on windows: threshold "
            f"{windows_t['ahc_threshold']}, percentile {windows_t['eigengap_p']}){others}; the default is "
            f"**{tuning['method']} on {level}**, the lowest dev DER with the model's d-vectors):",
            "",
            *table(results["dev"], tuple(GROUPS)),
            "",
            "**Test** (the settings tuned on dev; Resemblyzer: its d-vectors of the same windows, the same "
            "clustering tuned on its dev d-vectors):",
            "",
            f"With this model the default finds the right number of speakers in {100 * small['count_accuracy']:.0f}% "
            f"({interval(small['count_accuracy_ci'], 0)}%) of the 2-4 speaker test conversations at a DER of "
            f"{100 * small['der']:.1f}% ({interval(small['der_ci'], 1)}%), so the target of issue 15 "
            f"(at least {100 * TARGET_COUNT_ACCURACY:.0f}% and below {100 * TARGET_DER:.0f}%) is "
            f"**{'met' if met else 'not met'}**; at 5-8 speakers it is {100 * large['count_accuracy']:.0f}% and "
            f"{100 * large['der']:.1f}%. It says one speaker for {100 * one['count_accuracy']:.0f}% of the "
            "one-speaker recordings.",
            "",
            *table(results["test"], tuple(GROUPS)),
            "",
            f"Real-time factor (VAD + embedding + clustering; Resemblyzer's rows reuse the model's VAD, so they leave "
            f"it out; 1 torch thread, niced, on a 2-core machine shared with other "
            f"work (load average {load[0]:.1f} at the start and {load[1]:.1f} at the end), so noisy): {rtf}. "
            f"The project's DER equals pyannote.metrics' on every test row within {100 * check:.1g} points.",
            "",
            "![diarization example](img/diarization_example.png)",
            "",
            MARK_END,
        ]
    )


def write_section(path: Path, section: str) -> None:
    """Replace the text between the markers of ``path`` (or append the section)."""
    text = path.read_text()
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        text = head + section + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write(path, lambda f: f.write(text), "w")


def model_meta(model) -> str:
    meta = getattr(model, "meta", {}) or {}
    parts = [
        f"{k} {meta[k]:.4g}" if isinstance(meta[k], float) else f"{k} {meta[k]}"
        for k in ("step", "val_eer")
        if k in meta
    ]
    return ", ".join(parts) or "no metadata"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="checkpoint or exported encoder (default: the bundled model)")
    p.add_argument(
        "--per-count", type=int, default=PER_COUNT, help=f"conversations per speaker count and split ({PER_COUNT})"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resemblyzer", action="store_true", help="leave out the Resemblyzer reference rows")
    p.add_argument("--docs", type=Path, default=REPO / "docs", help="where diarization.md and img/ are updated")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start, load_start = time.time(), os.getloadavg()[0]
    model = load_encoder(args.model)
    fingerprint = model_fingerprint(model)
    # without --model: the form of the bundled model that load_model() chose (its int8 export where it runs)
    path = args.model.resolve() if args.model else bundled_model_path(int8=getattr(model, "int8", False)).resolve()
    results: dict = {
        "model": {
            "path": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
            "fingerprint": fingerprint,
            "meta": model_meta(model),
        },
        "date": time.strftime("%Y-%m-%d"),
        "sets": {},
    }
    systems: dict[str, dict] = {}
    refs: dict[str, dict] = {}
    for split in ("dev", "test"):
        manifest, refs[split] = ensure_set(split, args.per_count, args.seed)
        cached = set_id(split, manifest)
        speeches = embed_set(model, OUT / split, list(refs[split]), OUT / "cache" / cache_name(fingerprint) / cached)
        systems[split] = {"model": speeches}
        if not args.no_resemblyzer:
            folder = OUT / "cache" / f"resemblyzer-seg{DiarizationConfig().segment_s:g}" / cached
            systems[split]["Resemblyzer"] = resemblyzer_set(split, speeches, folder)
        audio_s = sum(c["duration_s"] for c in manifest["conversations"])
        results["sets"][split] = {"conversations": len(refs[split]), "hours": audio_s / 3600, "audio_s": audio_s}

    tunings, results["dev"], levels = {}, {}, {}
    for embedding, speeches in systems["dev"].items():
        tunings[embedding], comparison, levels[embedding] = tune(speeches, refs["dev"])
        if embedding != "model":  # the reference: its default level only
            keep = level_name(tunings[embedding])
            comparison = {k: v for k, v in comparison.items() if k.endswith(keep)}
        results["dev"].update({f"{embedding} / {m}": row for m, row in comparison.items()})
        print(f"dev {embedding}: {tunings[embedding]}", flush=True)
    tuning = tunings["model"]
    results["levels"] = {level: asdict(t) for level, t in levels["model"].items()}
    # the bundled int8 export quantises the bundled checkpoint's weights: the settings hold for both forms
    bundled = [bundled_model_path(int8).resolve() for int8 in (True, False)]
    fingerprints = [fingerprint, *(file_sha256(p) for p in bundled if path in bundled)]
    record = {**asdict(tuning), "model": results["model"], "split": "dev", "collar": COLLAR, "date": results["date"]}
    record["fingerprints"] = list(dict.fromkeys(fingerprints))
    if "search_threshold" in (previous := read_tuning(path) or {}):  # calibrated by search_eval.py: kept
        record["search_threshold"] = previous["search_threshold"]
    atomic_write(tuning_path(path), lambda f: f.write(json.dumps(record, indent=1) + "\n"), "w")
    rows = evaluate(systems["test"], refs["test"], tunings, levels["model"], results["sets"]["test"]["audio_s"])

    example = {"reference": refs["test"][EXAMPLE]}
    level = level_name(tuning)
    for label in (f"model / {tuning.method}, {level}", f"Resemblyzer / {tuning.method}, {level}"):
        if label in rows:
            example[label] = rows[label]["hyps"][EXAMPLE]
    results["test"] = {label: {k: v for k, v in row.items() if k != "hyps"} for label, row in rows.items()}
    results["tuning"] = {embedding: asdict(t) for embedding, t in tunings.items()}
    results["minutes"] = (time.time() - start) / 60
    results["load_average"] = (load_start, os.getloadavg()[0])
    atomic_write(OUT / "results.json", lambda f: f.write(json.dumps(results, indent=1)), "w")
    section = markdown(results)
    print(section)
    write_section(args.docs / "diarization.md", section)
    plot_timeline(
        example,
        args.docs / "img" / "diarization_example.png",
        title=f"test/{EXAMPLE} ({count(example['reference'])} test speakers): reference vs the default method",
        duration=systems["test"]["model"][EXAMPLE][0].duration_s,
        reference="reference",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

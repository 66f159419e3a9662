"""Evaluate a model on the official TEST trial lists and write its model card (docs/model.md).

Every figure of the card comes from this run (or from the JSON files it names): EER and minDCF per test list
(each file embedded once, through the same front end users get), error rates at the model's calibrated threshold
(``calibrate.py``), training facts from the checkpoint's meta and the experiment's metrics.csv, and Resemblyzer's
figures on the same trials from ``benchmarks/resemblyzer_eer.py``. The figures are also written to
``benchmarks/results/ge2e_small_eer.json``; ``--check`` re-evaluates and compares against that file. The
out-of-domain section comes from the generalisation benchmark's test side (``recipes/generalise/score.py --split
test``, results in ``benchmarks/results/generalise/<name>.json.gz``), one column per ``--generalisation`` name.

    python recipes/shared_ti/model_card.py                # writes docs/model.md and the results JSON
    python recipes/shared_ti/model_card.py --check        # re-run: exit 1 if any figure differs
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from training_facts import DEFAULT_MODEL, compute, lineage, training_facts

from ge2e.api import calibration_path, file_sha256
from ge2e.data.splits import TEST_LISTS
from ge2e.errors import Ge2eError
from ge2e.evaluate import EmbeddingStore, evaluate, list_trials, model_fingerprint
from ge2e.files import atomic_write
from ge2e.model import SpeakerEncoder

REPO = Path(__file__).resolve().parents[2]
KIND = {
    "LibriSpeech.test": "text-independent",
    "DSPSpeech-20.test": "text-independent (isolated words)",
    "speechocean762.test": "text-independent (read L2 English, adults and children)",
    "wuw2.test": "text-independent (8 kHz telephone)",
}
DEFAULT_RESULTS = REPO / "benchmarks/results/ge2e_small_eer.json"
DEFAULT_RESEMBLYZER = REPO / "benchmarks/results/resemblyzer_eer.json"
DEFAULT_BASELINE = REPO / "benchmarks/results/ge2e_small_v1_eer.json"  # the previous bundled model, same script
GENERALISE = REPO / "benchmarks/results/generalise"
DEFAULT_GENERALISATION = ("v6.test", "resemblyzer.test")  # the bundled model first, then what it is compared with


# ---------------------------------------------------------------------------------------------------- evaluation


def evaluate_lists(model: SpeakerEncoder, data: Path, threshold: float | None) -> dict[str, Any]:
    """EER, minDCF and (with a threshold) miss / false-accept rates of each official test list."""
    store = EmbeddingStore(None, model_fingerprint(model))
    results: dict[str, Any] = {}
    for name in TEST_LISTS:
        report, scored = evaluate(model, list_trials(data / "trials" / f"{name}.txt", data), store)
        row = {
            "eer": round(report["eer"], 6),
            "min_dcf_0.01": round(report["min_dcf_0.01"], 6),
            "min_dcf_0.05": round(report["min_dcf_0.05"], 6),
            "n_trials": report["n_trials"],
            "n_target": report["n_target"],
            "skipped_trials": report["skipped_trials"],
        }
        if threshold is not None:
            accept = scored.scores >= threshold
            target = scored.labels == 1
            row["miss_rate"] = round(float(np.mean(~accept[target])), 6)
            row["false_accept_rate"] = round(float(np.mean(accept[~target])), 6)
        results[name] = row
        print(f"{name}: EER {100 * row['eer']:.2f}%, minDCF(0.01) {row['min_dcf_0.01']:.3f}, {row['n_trials']} trials")
    return results


# ------------------------------------------------------------------------------------------------------ training


def recipe_stages(script: Path = REPO / "recipes/shared_ti/run.sh") -> list[str]:
    """The stage list of the recipe's header comment: its lines from "Stages:" to the first line that is not one."""
    header = [line[1:].rstrip() for line in script.read_text().splitlines() if line.startswith("#")]
    first = header.index(" Stages:") + 1
    stages = []
    for line in header[first:]:
        if not line.startswith("   "):
            break
        stages.append(line[3:])
    return stages


# ------------------------------------------------------------------------------------------------------- the card


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _init(t: dict[str, Any]) -> str:
    """The checkpoint a run was warm-started from, named so that a later bundled model is not taken for it."""
    init = t["init"]
    then = " (the bundled model of that time)" if init and (REPO / init).resolve() == DEFAULT_MODEL.resolve() else ""
    return f"`{init}`{then}"


def _soup_lines(t: dict[str, Any]) -> list[str]:
    """The card's account of a model soup (recipes/shared_ti/soup.py), or nothing."""
    if not t.get("soup"):
        return []
    runs = t["soup"]["runs"]
    fork = t["step"] - runs[0]["steps"]

    def data(r: dict[str, Any]) -> str:
        return ", ".join(f"`{c}`" for c in r["caches"]) + (" with SpecAugment" if r["spec_augment"] else "")

    ingredients = "; ".join(f"`{r['run']}` ({data(r)})" for r in runs)
    if fork:
        return [
            f"- Weights: a **model soup**, the uniform average of {len(runs)} runs forked from one training state at "
            f"step {fork:,} (`recipes/shared_ti/run.sh` stage 4, `soup.py`), each trained {runs[0]['steps']:,} more "
            f"steps on its own data: {ingredients}. The soup was chosen over each run by the dev lists "
            "([augmentation](augmentation.md)).",
        ]
    # forks warm-started from a checkpoint (init:) count their steps from 0; a checkpoint averaged in as it is
    # (soup.py --model, e.g. the one they started from) trained no steps of its own
    trained = [r for r in runs if r["steps"]]
    steps = ", ".join(f"{r['steps']:,}" for r in trained)
    trained_data = "; ".join(f"`{r['run']}` ({data(r)})" for r in trained)
    kept = [
        "the checkpoint they started from" if r["run"] == t["init"] else f"`{r['run']}`" for r in runs if not r["steps"]
    ]
    also = f", and {', '.join(kept)} as it is" if kept else ""
    return [
        f"- Weights: a **model soup**, the uniform average of {len(runs)} checkpoints: of each run warm-started from "
        f"{_init(t)} the checkpoint of its best periodic dev validation (`soup.py`), after {steps} steps on its "
        f"own data: {trained_data}{also}. It was chosen over the checkpoint they started from and each run "
        "(`recipes/shared_ti/soup_choice.py`, `benchmarks/results/soup_choice.json`; [augmentation](augmentation.md) "
        "says how).",
    ]


def render(
    record: dict[str, Any],
    resemblyzer: dict[str, Any] | None,
    baseline: dict[str, Any] | None = None,
    generalisation: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The model card in Markdown."""
    t, cal, res = record["training"], record.get("calibration"), record["test"]
    m = t["model"]
    arch = f"LSTM {m['num_layers']} x {m['hidden_size']}" + (
        f" with projection {m['proj_size']}" if m["proj_size"] else f", linear {m['hidden_size']}"
    )
    if m.get("frame_stack", 1) > 1:
        arch += f", {m['frame_stack']} stacked frames per LSTM step"
    hours = f"{t['train_seconds'] / 3600:.1f} h ({t['seconds_per_step']:.2f} s/step)" if "train_seconds" in t else "-"
    total = compute(t)
    warm = (
        f"; it was warm-started from {_init(t)}, weights with {t['lineage']['steps']:,} earlier steps "
        f"({t['lineage']['utterances']:,} utterance crops, {t['lineage']['hours']:.1f} CPU-hours, back to the "
        "first bundled model)"
        if t.get("lineage")
        else ""
    )
    lines = [
        "# Model card: the bundled `ge2e_small` speaker encoder",
        "",
        "Generated by `recipes/shared_ti/model_card.py` (do not edit by hand); every figure below comes from that",
        "script, `recipes/shared_ti/calibrate.py` and `benchmarks/resemblyzer_eer.py`. Re-run and compare:",
        "`python recipes/shared_ti/model_card.py --check`.",
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| file | `{record['model']}` ({record['model_mb']:.1f} MB, sha256 `{record['model_sha256'][:12]}`) |",
        f"| architecture | {arch}, d-vector D = {t['embedding_size']}, {t['parameters']:,} parameters "
        f"(preset `{t['preset']}`) |",
        f"| front end | {t['front_end']} |",
        f"| inference | {t['windows']} |",
        "| enrollment | average of the L2-normalised utterance d-vectors, normalised again |",
        "| score | cosine similarity in [-1, 1] |",
        "",
        "## Training",
        "",
        f"- Data: official **train** splits {', '.join(f'`{s}`' for s in t['train_splits'])} of the shared corpora "
        "(`$GE2E_DATA/splits`); no dev or test speaker is trained on.",
        f"- Validation (checkpoint selection): {', '.join(f'`{s}`' for s in t['val_splits'])}.",
        f"- Loss: GE2E ({t['loss']}); batch {t['batch']}, random crops of {t['crop_frames']} frames; {t['optimizer']}.",
        f"- Checkpoint: step {t['step']}"
        + (f", validation EER {_pct(t['val_eer'])} (mean of the dev sources)." if t.get("val_eer") else ".")
        + " Candidates (best and last checkpoints of the runs, soups of them) are compared by their mean EER on the "
        "four official dev trial lists (`calibrate.py` prints them) and, since the fourth round, by how well they "
        "tell the speakers of the dev diarization conversations apart ([diarization](diarization.md), "
        "[augmentation](augmentation.md) for the trade made).",
        f"- Training wall time to that step: {hours}, one CPU core, from the experiment's metrics.csv{warm}.",
        *_soup_lines(t),
        f"- Training compute in all: **{total['steps']:,} steps, {total['utterances']:,} utterance crops, "
        f"{total['hours']:.1f} CPU-hours**.",
        "",
    ]
    if record.get("curve"):
        caption = "the runs behind this model (`recipes/shared_ti/plot_runs.py`)"
        lines += [
            f"Validation EER against training hours of {record.get('curve_caption') or caption}:",
            "",
            f"![training curve]({record['curve']})",
            "",
        ]
    if record.get("choice"):
        lines += [
            "How the encoder was chosen: encoders trained from scratch with this recipe for the same CPU budget, "
            "compared on the dev lists ([encoder_choice.md](encoder_choice.md), `recipes/shared_ti/run.sh` stage 2):",
            "",
            f"![encoder choice]({record['choice']})",
            "",
        ]
    lines += [
        "## Decision threshold",
        "",
    ]
    if cal:
        dev = ", ".join(f"`{k}` EER {_pct(v['eer'])} ({v['n_trials']} trials)" for k, v in cal["lists"].items())
        lines += [
            f"`ge2e.verify` and `ge2e verify` accept when the score is >= **{cal['threshold']:.4f}**: the equal-error-"
            f"rate threshold of the pooled official **dev** trial lists (pooled EER {_pct(cal['pooled_eer'])}; {dev}).",
            f"It is stored in `{Path(record['model']).with_suffix('.json')}`, tied to the weights' "
            "sha256. Pass `threshold=` / `--threshold` for another operating point.",
        ]
    else:
        lines.append("No calibration file: `verify` needs an explicit threshold.")
    lines += [
        "",
        "## Results on the official test trial lists",
        "",
        "Speakers of the test splits are unseen in training, validation and calibration. EER and the normalised",
        "minDCF (p_target 0.01 and 0.05, C_miss = C_fa = 1) are threshold-free; miss / false-accept rates use the",
        "calibrated threshold above. A trial whose file cannot be used (no speech found) is dropped and counted.",
        "",
        "| trial list | kind | trials (dropped) | EER | minDCF 0.01 | minDCF 0.05 | miss @ thr | false accept @ thr |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res.items():
        kind = KIND.get(name, "text-dependent (same keyword)")
        lines.append(
            f"| {name} | {kind} | {r['n_trials']} ({r['skipped_trials']}) | {_pct(r['eer'])} | "
            f"{r['min_dcf_0.01']:.3f} | {r['min_dcf_0.05']:.3f} | {_pct(r.get('miss_rate'))} | "
            f"{_pct(r.get('false_accept_rate'))} |"
        )
    lines += ["", "## Comparison: Resemblyzer on the same trials", ""]
    if resemblyzer:
        old = (baseline or {}).get("test") or {}
        lines += [
            f"{resemblyzer['system']}, its own front end (webrtcvad) on the same decoded 16 kHz audio, same trials, "
            "same metric code (`benchmarks/resemblyzer_eer.py`, results in `benchmarks/results/resemblyzer_eer.json`)."
            + (
                " The previous bundled model (v1) is evaluated by this script on the same trials "
                "(`benchmarks/results/ge2e_small_v1_eer.json`)."
                if old
                else ""
            ),
            "",
            "| trial list | ge2e_small EER | " + ("previous model EER | " if old else "") + "Resemblyzer EER | "
            "ge2e_small minDCF 0.01 | Resemblyzer minDCF 0.01 | trials scored (ge2e / Resemblyzer) |",
            "|---|---|---|---|---|" + ("---|" if old else "") + "---|",
        ]
        both = [n for n in res if n in resemblyzer["lists"]]
        for name in both:
            r, b = res[name], resemblyzer["lists"][name]
            previous = f"{_pct(old[name]['eer'])} | " if name in old else ("- | " if old else "")
            lines.append(
                f"| {name} | {_pct(r['eer'])} | {previous}{_pct(b['eer'])} | {r['min_dcf_0.01']:.3f} | "
                f"{b['min_dcf_0.01']:.3f} | {r['n_trials']} / {b['n_trials']} |"
            )
        if both:
            ours = float(np.mean([res[n]["eer"] for n in both]))
            theirs = float(np.mean([resemblyzer["lists"][n]["eer"] for n in both]))
            before = ""
            if old:
                known = set(both) <= set(old)
                before = f"{_pct(float(np.mean([old[n]['eer'] for n in both])))} | " if known else "- | "
            lines.append(
                f"| **mean of {len(both)} lists** | **{_pct(ours)}** | {before}**{_pct(theirs)}** | | | "
                f"ours / Resemblyzer: **{ours / theirs:.2f}x** |"
            )
        lines += [
            "",
            "Resemblyzer was trained on about 1.8k speakers (LibriSpeech-other, VoxCeleb 1 and 2); `ge2e_small` on the "
            "few hundred speakers of the shared train splits, on CPU.",
        ]
    else:
        lines.append(
            "Not measured yet: run `python benchmarks/resemblyzer_eer.py` (needs `pip install 'ge2e[bench]'`)."
        )
    lines += generalisation_section(generalisation or {})
    lines += [
        "",
        "## Limitations",
        "",
        "- Few training speakers (see above): expect higher error rates on other languages, channels and far-field "
        "audio than on the shared corpora. Re-calibrate the threshold on your own development data.",
        "- DSPSpeech-20 has one recording device per speaker, so its figures partly measure device recognition.",
        "- The model is text-independent; on the keyword list it is used as is, without keyword-specific training.",
        "- Test utterances with under 1 s of speech are scored but flagged short; what such scores are worth is "
        "measured in docs/usage.md. Audio without speech is refused.",
        "",
        "## Reproduce",
        "",
        "`recipes/shared_ti/run.sh`, stage by stage (`bash recipes/shared_ti/run.sh FIRST LAST` runs a range; every "
        "stage resumes where it stopped):",
        "",
        "```text",
        *recipe_stages(),
        "```",
        "",
    ]
    return "\n".join(lines)


def read_generalisation(names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: result}`` of the generalisation benchmark's test-side results that exist (``score.py --split test``)."""
    found = {}
    for name in names:
        path = GENERALISE / f"{name}.json.gz"
        if path.is_file():
            found[name] = json.loads(gzip.decompress(path.read_bytes()))
    return found


def generalisation_section(results: dict[str, dict[str, Any]]) -> list[str]:
    """The out-of-domain table (test side) and the files each model refused per list, one column per result."""
    lines = ["", "## Out of domain: other languages and stressed audio (test speakers)", ""]
    if not results:
        return [*lines, "Not measured yet: run `recipes/generalise/score.py MODEL --name NAME.test --split test`."]
    names = list(results)
    labels = [n.removesuffix(".test") for n in names]
    first = results[names[0]]
    lines += [
        "The generalisation benchmark of `recipes/generalise/` on the TEST side "
        "(`recipes/generalise/score.py --split test`; choices are made on its dev side, docs/generalisation.md): "
        "the five test lists, `arabic_speech_commands.test` (a language and recording setups no training corpus "
        "has) and the test lists with their test side stressed by `recipes/generalise/stress.py` (at most 1,000 "
        "trials a list; a condition's EER is its mean over the five lists). EER in %:",
        "",
        "| | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(names),
    ]
    tables = [
        {**r["in_domain"], "in-domain mean": r["in_domain_mean"], **r["out_of_domain"],
         "out-of-domain mean": r["out_of_domain_mean"]}
        for r in results.values()
    ]  # fmt: skip
    for row in tables[0]:
        cells = [f"{100 * table.get(row, float('nan')):.2f}" for table in tables]
        bold = row.endswith("mean")
        label = f"**{row}**" if bold else row
        lines.append(f"| {label} | " + " | ".join(f"**{c}**" if bold else c for c in cells) + " |")
    clean = [*first["in_domain"], *(n for n in first["out_of_domain"] if n in first["lists"])]  # not stressed
    lines += [
        "",
        "Files each model refused (no speech found, too short, undecodable), per clean list: audio it could not "
        "score at all. Trials with a refused file are left out of that model's EER.",
        "",
        "| list | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for name in clean:
        counts = [str(r["lists"].get(name, {}).get("refused_files", "-")) for r in results.values()]
        lines.append(f"| {name} | " + " | ".join(counts) + " |")
    return lines


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON record at ``path``, or None where there is none (a first run, a missing baseline)."""
    return json.loads(path.read_text()) if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="checkpoint (default: the bundled model)")
    parser.add_argument("--exp", help="experiment folder with metrics.csv (default: the checkpoint's out_dir)")
    parser.add_argument("--data", default=os.environ.get("GE2E_DATA", "../shared/data"), help="shared data folder")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="figures JSON (written, or checked)")
    parser.add_argument("--resemblyzer", default=str(DEFAULT_RESEMBLYZER), help="Resemblyzer figures JSON")
    parser.add_argument("--baseline", default=str(DEFAULT_BASELINE), help="the previous model's figures JSON")
    parser.add_argument("--out", default=str(REPO / "docs/model.md"), help="model card to write")
    parser.add_argument("--check", action="store_true", help="re-evaluate and compare with --results; write nothing")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--curve", help="training-curve PNG to show, relative to docs/ (plot_runs.py)")
    parser.add_argument("--curve-caption", help="what the curve shows: 'Validation EER against training hours of ...'")
    parser.add_argument("--choice", help="encoder-choice PNG to show, relative to docs/ (encoder_choice.py)")
    parser.add_argument("--render", action="store_true", help="only re-render the card from --results")
    parser.add_argument("--generalisation", nargs="+", default=list(DEFAULT_GENERALISATION), metavar="NAME",
                        help="test-side generalisation results to tabulate, the bundled model first")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.render:
        record = read_json(Path(args.results))
        if record is None:
            print(f"model_card: {args.results} not found", file=sys.stderr)
            return 1
        record["curve"] = args.curve or record.get("curve")
        record["curve_caption"] = args.curve_caption or record.get("curve_caption")
        record["choice"] = args.choice or record.get("choice")
        return _write(record, args)
    data = Path(args.data)
    if not (data / "trials").is_dir():
        print(f"model_card: {data}/trials not found (set GE2E_DATA or --data)", file=sys.stderr)
        return 2
    try:
        model = SpeakerEncoder.load(args.model)
        calibration = read_json(calibration_path(args.model))
        sha = file_sha256(args.model)
        if calibration and calibration.get("model_sha256") != sha:
            raise Ge2eError(f"{calibration_path(args.model)}: made for other weights; re-run calibrate.py")
        test = evaluate_lists(model, data, calibration["threshold"] if calibration else None)
    except Ge2eError as exc:
        print(f"model_card: {exc}", file=sys.stderr)
        return 1
    results_path = Path(args.results)
    previous = read_json(results_path)
    if args.check:
        if previous is None or previous.get("test") != test:
            print(f"model_card: figures differ from {results_path}", file=sys.stderr)
            print(json.dumps({"expected": (previous or {}).get("test"), "got": test}, indent=1), file=sys.stderr)
            return 1
        print(f"{results_path}: every figure reproduced")
        return 0
    exp = Path(args.exp) if args.exp else Path((model.meta.get("config") or {}).get("out_dir", "exp/none"))
    training = training_facts(model, exp)
    if previous and previous.get("model_sha256") == sha:
        training = previous["training"]  # the experiment folder is not in git: keep what the first run measured
    else:
        training["lineage"] = lineage(training, previous)
    model_path = Path(args.model).resolve()
    record = {
        "model": str(model_path.relative_to(REPO) if model_path.is_relative_to(REPO) else model_path),
        "model_sha256": sha,
        "model_mb": round(Path(args.model).stat().st_size / 2**20, 2),
        "training": training,
        "calibration": calibration,
        "test": test,
        "curve": args.curve,
        "curve_caption": args.curve_caption,
        "choice": args.choice,
        "script": "recipes/shared_ti/model_card.py",
    }
    return _write(record, args)


def _write(record: dict[str, Any], args: argparse.Namespace) -> int:
    """Write the figures JSON and the card rendered from it."""
    results_text = json.dumps(record, indent=1) + "\n"
    atomic_write(args.results, lambda f: f.write(results_text), "w")
    generalisation = read_generalisation(args.generalisation)
    card = render(record, read_json(Path(args.resemblyzer)), read_json(Path(args.baseline)), generalisation)
    atomic_write(args.out, lambda f: f.write(card), "w")
    print(f"wrote {args.out} and {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

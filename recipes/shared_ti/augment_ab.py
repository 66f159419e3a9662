"""Augmentation A/Bs on the bundled model's run (issue 11): each arm of ``run.sh`` stage 4 resumed the same training
state and trained the same steps; only its training data differ from ``control``. Scores every arm's last weights on
the four official DEVELOPMENT trial lists and compares it with ``control`` trial for trial: paired bootstrap of the
EER difference, resampling enrolment speakers (not single trials: a speaker's trials are not independent).
Writes benchmarks/results/augment_ab.json, docs/img/augment_ab.png and the generated page docs/augmentation.md.

    python recipes/shared_ti/augment_ab.py exp/aug_control exp/aug_telephone exp/aug_specaug [exp/soup.pt]

A checkpoint file instead of a run folder (e.g. the average of the arms, ``soup.py``) is scored the same way.
    python recipes/shared_ti/augment_ab.py --render       # page and plot again from the JSON

Decision rule, per arm: adopt when the 95% interval of the mean dev EER difference lies below zero, reject when
it lies above, otherwise no evidence at this budget (keep the simpler recipe).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cut_last import encoder_from_last
from plot_runs import curve

from ge2e.data.cache import FeatureCache
from ge2e.data.splits import DEV_LISTS
from ge2e.evaluate import EmbeddingStore, EvalOptions, evaluate, list_trials
from ge2e.inference import model_fingerprint
from ge2e.metrics import bootstrap_eer_differences
from ge2e.model import SpeakerEncoder

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks/results/augment_ab.json"
PAGE = REPO / "docs/augmentation.md"
PLOT = REPO / "docs/img/augment_ab.png"
RESAMPLES = 1000
WHAT = {
    "control": "none: the v3 recipe continued unchanged",
    "telephone": "+ a telephone-channel copy of every training file but wuw2's (8 kHz, 300-3400 Hz, G.711 mu-law "
    "or GSM 06.10)",
    "specaug": "SpecAugment on every crop: one band of up to 6 mel bands and one span of up to 20 frames zeroed",
    "speed": "+ copies of each LibriSpeech, speechocean762 and Speech Commands training file played 0.9x and 1.1x as "
    "fast (pitch moves too), each a new pseudo-speaker",
    "soup": "none of its own: the uniform average of the weights of the arms above (`soup.py`, a model soup)",
    "noise_reverb": "+ a noisy copy (coloured noise, SNR 5-20 dB) and a reverberated copy (simulated room, RT60 "
    "0.2-0.8 s) of each LibriSpeech, speechocean762 and Speech Commands training file",
}


def speaker_lookup(cache: str) -> Callable[[str], str]:
    """Audio path -> its speaker key in the feature ``cache``, for the bootstrap's speaker groups; a file the cache
    lacks (its VAD found too little) was read from audio and is named by its folder."""
    known = {os.path.realpath(u.path): u.key for u in FeatureCache(cache).utterances if not u.augment}
    return lambda path: known.get(os.path.realpath(path)) or Path(path).parent.name


def score_arm(run: Path, data: Path, cache: str, speaker_of: Callable[[str], str], branch_step: int) -> dict[str, Any]:
    """Per-trial dev scores of a run's last weights, its periodic validation curve since the branch, its step."""
    model = encoder_from_last(run) if run.is_dir() else SpeakerEncoder.load(run)  # a file: a soup.py checkpoint
    store = EmbeddingStore(None, model_fingerprint(model))
    lists = {}
    for name in DEV_LISTS:
        report, scored = evaluate(model, list_trials(data / "trials" / f"{name}.txt", data), store,
                                  EvalOptions(features=[cache]))  # fmt: skip
        lists[name] = {
            "eer": report["eer"],
            "scores": scored.scores,
            "labels": scored.labels,
            "trials": [(t.enroll[0], t.test) for t in scored.trials],
            "groups": np.array([speaker_of(t.enroll[0]) for t in scored.trials]),
        }
        print(f"{run.name} {name}: EER {100 * report['eer']:.2f}% ({report['n_trials']} trials)")
    steps, _, val = curve(run) if run.is_dir() else (np.zeros(0), None, np.zeros(0))
    keep = ~np.isnan(val) & (steps > branch_step)
    return {"run": run.stem, "step": int(model.meta["step"]), "lists": lists,
            "curve": {"steps": steps[keep].tolist(), "val_eer": np.round(val[keep], 5).tolist()}}  # fmt: skip


def compare(control: dict[str, Any], arm: dict[str, Any]) -> dict[str, Any]:
    """EER differences arm - control per dev list and for their mean, each with a 95% paired-bootstrap interval."""
    per_list, draws = {}, []
    for k, name in enumerate(DEV_LISTS):
        a, b = control["lists"][name], arm["lists"][name]
        if a["trials"] != b["trials"]:
            raise SystemExit(f"{arm['run']}: {name} scored other trials than {control['run']}; not a paired test")
        # a seed per list: one seed would draw the lists' resamples from one random stream, correlating them
        d = bootstrap_eer_differences(a["scores"], b["scores"], a["labels"], a["groups"], RESAMPLES, seed=k)
        draws.append(d)
        per_list[name] = interval(b["eer"] - a["eer"], d)
    n = min(len(d) for d in draws)
    mean = np.mean([d[:n] for d in draws], axis=0)  # each list resampled independently, replicate by replicate
    mean_diff = float(np.mean([per_list[k]["diff"] for k in DEV_LISTS]))
    return {"lists": per_list, "mean": interval(mean_diff, mean)}


def interval(diff: float, draws: np.ndarray) -> dict[str, float]:
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return {"diff": round(float(diff), 6), "lo": round(float(lo), 6), "hi": round(float(hi), 6)}


def verdict(mean: dict[str, float]) -> str:
    if mean["hi"] < 0:
        return "helps: adopt"
    if mean["lo"] > 0:
        return "hurts: reject"
    return "no evidence either way"


def plot(record: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, lists = record["runs"], list(DEV_LISTS)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1.1, 1]})
    colour = {r["run"]: f"C{i}" for i, r in enumerate(runs)}  # one colour per run in both panels
    for r in runs:
        if not r["curve"]["steps"]:
            continue  # a soup has no training curve of its own
        val = 100 * np.array(r["curve"]["val_eer"])
        left.plot(r["curve"]["steps"], val, marker="o", markersize=3, label=r["run"], color=colour[r["run"]])
    left.set_xlabel("training step (all arms resume the v3 run at the same step)")
    left.set_ylabel("periodic validation EER (%)")
    left.set_title("Validation EER (4 dev sources, 1000 random trials each)", fontsize=9)
    left.grid(alpha=0.3)
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)  # below: never on a line
    arms = [r for r in runs if r["run"] != record["control"]]
    width = 0.8 / max(1, len(arms))
    for k, r in enumerate(arms):
        cells = [r["vs_control"]["lists"][n] for n in lists] + [r["vs_control"]["mean"]]
        x = np.arange(len(cells)) + (k - (len(arms) - 1) / 2) * width
        diff = 100 * np.array([c["diff"] for c in cells])
        err = 100 * np.array([[c["diff"] - c["lo"] for c in cells], [c["hi"] - c["diff"] for c in cells]])
        right.bar(x, diff, width, yerr=err, capsize=3, label=r["run"], color=colour[r["run"]])
    right.axhline(0, color="black", linewidth=0.8)
    names = [n.split(".")[0].replace("speech_commands_v0", "Speech Commands") for n in lists] + ["mean of 4"]
    right.set_xticks(np.arange(len(names)), names, fontsize=8, rotation=15)
    right.set_ylabel(f"dev EER minus {record['control']}'s (points)")
    right.set_title("Last weights on the official dev lists, 95% paired bootstrap (speakers)", fontsize=9)
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def pts(c: dict[str, float]) -> str:
    return f"{100 * c['diff']:+.2f} [{100 * c['lo']:+.2f}, {100 * c['hi']:+.2f}]"


def render(record: dict[str, Any]) -> str:
    runs, lists = record["runs"], list(DEV_LISTS)
    control = next(r for r in runs if r["run"] == record["control"])
    lines = [
        "# Does augmentation help the bundled model? (A/B on the official dev lists)",
        "",
        "<!-- generated by recipes/shared_ti/augment_ab.py from benchmarks/results/augment_ab.json; "
        "do not edit by hand -->",
        "",
        f"Every arm resumed the **same training state** of the v3 run (step {record['branch_step']}: weights, Adam "
        "moments, learning rate, RNG) and trained the same number of steps with the bundled recipe "
        "(`recipes/shared_ti/conf/small.yaml`: the five train splits, 20 speakers x 8 crops of 140-180 frames, Adam); "
        "only the training data differ (`bash recipes/shared_ti/run.sh 4 4`). Augmented copies are made at "
        "`ge2e prepare --augment` time and join their speaker's utterances; wuw2 is telephone speech already and "
        f"keeps only its originals. {record['conditions']}",
        "",
        "![validation EER and dev EER differences](img/augment_ab.png)",
        "",
        "The comparison: each arm's last weights on the four official **dev** trial lists (features from `cache/all`, "
        "original recordings), against `control` on the same trials. Intervals: 95% paired bootstrap, "
        f"{RESAMPLES} resamples of the enrolment speakers (whole speakers, so the interval reflects how few speakers "
        "the dev lists hold); the mean's interval resamples each list independently. Test lists are not used.",
        "",
        "| arm | training data | step | " + " | ".join(f"{n} EER" for n in lists) + " | mean dev EER |",
        "|---|---|---:|" + "---:|" * (len(lists) + 1),
    ]
    for r in runs:
        eers = [100 * r["eer"][n] for n in lists]
        what = WHAT.get(r["run"].removeprefix("aug_").rstrip("0123456789"), "")  # soup3: a soup of three
        lines.append(f"| `{r['run']}` | {what} | {r['step']} | "
                     + " | ".join(f"{e:.2f}%" for e in eers) + f" | {np.mean(eers):.2f}% |")  # fmt: skip
    lines += [
        "",
        f"Differences from `{control['run']}` in EER points, [95% interval]:",
        "",
        "| arm | " + " | ".join(lists) + " | mean | verdict |",
        "|---|" + "---:|" * (len(lists) + 1) + "---|",
    ]
    for r in runs:
        if r is control:
            continue
        v = r["vs_control"]
        lines.append(f"| `{r['run']}` | " + " | ".join(pts(v["lists"][n]) for n in lists)
                     + f" | **{pts(v['mean'])}** | {verdict(v['mean'])} |")  # fmt: skip
    lines += [
        "",
        "Rule: an augmentation is adopted when the interval of the mean difference lies below zero, rejected when "
        "it lies above, and otherwise left out (the simpler recipe stays). Caveats: one seed per arm; a fine-tuning "
        "budget, not training from scratch; the dev lists hold few speakers (DSPSpeech-20.dev has 4).",
        "",
        record.get("conclusion", "").strip(),
        "",
        "An earlier, smaller pilot (speed, noise and reverberation on LibriSpeech only, 2 x 128 encoder, 500 steps) "
        "is on [experiments/2026-12-07-augmentation-pilot.md](experiments/2026-12-07-augmentation-pilot.md).",
        "",
        f"_Generated at commit {record['commit']}._",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="arm folders of run.sh stage 4, control first")
    parser.add_argument("--data", default=os.environ.get("GE2E_DATA", "../shared/data"), help="shared data folder")
    parser.add_argument("--cache", default="cache/all", help="feature cache of the dev files")
    parser.add_argument("--branch-step", type=int, default=8050, help="the v3 step every arm resumed")
    parser.add_argument("--conditions", default="", help="a sentence on the machine's load during the runs")
    parser.add_argument("--conclusion", default="", help="the decision, written under the tables")
    parser.add_argument("--render", action="store_true", help="only re-render page and plot from the JSON")
    args = parser.parse_args(argv)
    if args.render:
        record = json.loads(RESULTS.read_text())
        record["conclusion"] = args.conclusion or record.get("conclusion", "")
    else:
        if len(args.runs) < 2:
            parser.error("name the control run and at least one arm, or pass --render")
        torch.set_num_threads(1)
        speaker_of = speaker_lookup(args.cache)
        scored = [score_arm(run, Path(args.data), args.cache, speaker_of, args.branch_step) for run in args.runs]
        if len({s["step"] for s in scored}) > 1:
            return print(f"the arms stopped at different steps: {[s['step'] for s in scored]}", file=sys.stderr) or 1
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
        record = {
            "control": scored[0]["run"],
            "branch_step": args.branch_step,
            "runs": [],
            "conditions": args.conditions,
            "conclusion": args.conclusion,
            "commit": commit.stdout.strip(),
        }
        for s in scored:
            row = {"run": s["run"], "step": s["step"], "curve": s["curve"],
                   "eer": {n: round(float(s["lists"][n]["eer"]), 6) for n in DEV_LISTS}}  # fmt: skip
            if s is not scored[0]:
                row["vs_control"] = compare(scored[0], s)
            record["runs"].append(row)
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    plot(record, PLOT)
    PAGE.write_text(render(record))
    print(f"wrote {RESULTS}, {PLOT}, {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

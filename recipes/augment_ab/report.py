"""Write docs/experiments/2026-12-07-augmentation-pilot.md and docs/img/augment_*.png from the A/B runs of
recipes/augment_ab/run.sh.

    python recipes/augment_ab/report.py [--runs no_aug aug] [--exp exp/augment_ab]

Every number in the page is read from the runs: ``<run>/config.yaml`` (the resolved config), ``<run>/metrics.csv``
(periodic validation EER, training loss, wall-clock time), the training caches (speaker and utterance counts) and
``<run>/dev_trials.{json,npz}`` (official dev trial lists, written by score_dev.py). Nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np

from ge2e.config import TrainConfig, load_config
from ge2e.data.augment import RT60_RANGE_S, SNR_RANGE_DB, SPEED_FACTORS
from ge2e.data.sampler import SpeakerPool
from ge2e.metrics import eer

BASELINE = "no_aug"
BOOTSTRAP = 1000
LOSS_WINDOW = 50  # training loss is reported as the mean of the last LOSS_WINDOW steps


def read_run(exp: Path, name: str) -> dict:
    out = exp / name
    cfg: TrainConfig = load_config(out / "config.yaml")
    with (out / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    val = [(int(r["step"]), float(r["val_eer"])) for r in rows if r["val_eer"] not in ("", None)]
    steps = int(rows[-1]["step"]) if rows else 0
    source = cfg.data.sources[0]
    pool = SpeakerPool.from_source(source, cfg.data.min_utterances)
    keys = pool.speakers
    utts = int(sum(len(g) for g in pool.groups))
    originals = [pool.cache.utterances[i] for g in pool.groups for i in g if not pool.cache.utterances[i].augment]
    speech_s = float(np.mean([u.num_frames for u in originals])) * pool.cache.audio_config.hop_ms / 1000
    variants = sorted({pool.cache.utterances[i].augment or "original" for g in pool.groups for i in g})
    run = {
        "name": name,
        "cfg": cfg,
        "steps": steps,
        "target_steps": cfg.steps,
        "val": val,
        "final_val": val[-1] if val else None,
        "best_val": min(val, key=lambda sv: sv[1]) if val else None,
        "speakers": len(keys),
        "pseudo": sum("_sp" in k.split("/", 1)[1] for k in keys),
        "utterances": utts,
        "speech_s": speech_s,
        "originals": len(originals),
        "variants": variants,
        "loss": [(int(r["step"]), float(r["loss"])) for r in rows],
        "hours": (float(rows[-1]["time"]) - float(rows[0]["time"])) / 3600 if len(rows) > 1 else 0.0,
        "dev": None,
        "pool": pool,
    }
    if (out / "dev_trials.json").exists():
        run["dev"] = json.loads((out / "dev_trials.json").read_text())
        with np.load(out / "dev_trials.npz") as z:
            run["dev_arrays"] = {k: z[k] for k in z.files}
    return run


def paired_bootstrap(a: dict, b: dict, key: str, seed: int = 0) -> tuple[float, float, float] | None:
    """EER(b) - EER(a) on the same trials, with a 95% percentile interval from resampling trials."""
    if a["dev"] is None or b["dev"] is None:
        return None
    sa, la = a["dev_arrays"][f"{key}/scores"], a["dev_arrays"][f"{key}/labels"]
    sb, lb = b["dev_arrays"][f"{key}/scores"], b["dev_arrays"][f"{key}/labels"]
    if len(la) != len(lb) or not np.array_equal(la, lb):
        return None  # not the same trials: no paired comparison
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, len(la), len(la))
        if 0 < la[i].sum() < len(i):
            diffs.append(eer(sb[i], la[i])[0] - eer(sa[i], la[i])[0])
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return eer(sb, lb)[0] - eer(sa, la)[0], float(lo), float(hi)


def identical_originals(a: dict, b: dict) -> str:
    """A sentence saying whether the original clips of run ``a`` have the same features in run ``b``'s cache."""
    ca, cb = a["pool"].cache, b["pool"].cache
    if ca.root.resolve() == cb.root.resolve():
        return ""
    where = {os.path.realpath(u.path): i for i, u in enumerate(cb.utterances) if not u.augment}
    mine = [i for g in a["pool"].groups for i in g if not ca.utterances[i].augment]
    found = [(i, where[p]) for i in mine if (p := os.path.realpath(ca.utterances[i].path)) in where]
    same = sum(np.array_equal(ca.features(i), cb.features(j)) for i, j in found)
    return (
        f"`{a['name']}` reads its clips from `{a['cfg'].data.sources[0].cache}`, `{b['name']}` from "
        f"`{b['cfg'].data.sources[0].cache}`: {same} of the {len(mine)} original clips of `{a['name']}` have "
        f"bit-identical features in both caches ({len(found)} found)"
        + (", so the runs differ only in the added copies." if same == len(mine) else ": the caches DIFFER.")
    )


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for r in runs:
        if r["val"]:
            s, e = zip(*r["val"], strict=True)
            ax1.plot(s, [100 * v for v in e], marker="o", label=f"{r['name']} ({r['speakers']} spk)")
        if r["loss"]:
            s, v = zip(*r["loss"], strict=True)
            k = max(1, min(LOSS_WINDOW, len(v) // 5))
            smooth = np.convolve(v, np.ones(k) / k, mode="valid")
            ax2.plot(s[k - 1 :], smooth, label=r["name"])
    splits = ", ".join(sp for src in runs[0]["cfg"].val.sources for sp in src.splits)
    ax1.set(xlabel="step", ylabel="validation EER (%)", title=f"Validation EER ({splits})")
    ax2.set(xlabel="step", ylabel="GE2E loss (running mean)", title="Training loss (not comparable across N speakers)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def describe(r: dict) -> str:
    aug = [v for v in r["variants"] if v != "original"]
    return "none (originals)" if not aug else "originals + " + ", ".join(aug)


def verdict(runs: list[dict], base: dict) -> tuple[list[str], dict[str, str]]:
    """The conclusion, derived from the numbers: one paragraph per compared run, and each run's outcome
    ("helps", "hurts", "mixed", "inconclusive")."""
    lines, outcome = [], {}
    for r in runs:
        if r is base or not r["final_val"] or not base["final_val"]:
            continue
        d_final = r["final_val"][1] - base["final_val"][1]
        d_best = r["best_val"][1] - base["best_val"][1]
        boots = {}
        for name in (r["dev"] or {}).get("final", {}).get("lists", {}):
            boots[name] = paired_bootstrap(base, r, f"final/{name}")
        better = [n for n, b in boots.items() if b and b[2] < 0]  # whole interval below zero
        worse = [n for n, b in boots.items() if b and b[1] > 0]
        rel = d_final / base["final_val"][1] if base["final_val"][1] > 0 else math.nan
        direction = "lower" if d_final < 0 else "higher"
        text = (
            f"**{r['name']} vs {base['name']}.** At the last step ({r['final_val'][0]}), the periodic validation EER "
            f"of `{r['name']}` is {pct(r['final_val'][1])} against {pct(base['final_val'][1])}: "
            f"{abs(100 * d_final):.1f} points {direction} ({100 * rel:+.0f}% relative); best-over-run "
            f"{pct(r['best_val'][1])} vs {pct(base['best_val'][1])} ({100 * d_best:+.1f} points). "
        )
        if boots:
            parts = []
            for name, b in boots.items():
                if b:
                    parts.append(f"{name}: {100 * b[0]:+.1f} points [95% CI {100 * b[1]:+.1f}, {100 * b[2]:+.1f}]")
            text += (
                "On the official dev trial lists (final models, EER difference "
                f"{r['name']} - {base['name']}, paired bootstrap over trials): " + "; ".join(parts) + ". "
            )
        if better and not worse:
            text += (
                f"The improvement is outside trial-sampling noise on {', '.join(better)}"
                + (f" and not significant on {', '.join(set(boots) - set(better))}" if set(boots) - set(better) else "")
                + ": augmentation helps in this setting."
            )
            outcome[r["name"]] = "helps"
        elif worse and not better:
            text += f"Augmentation is significantly worse on {', '.join(worse)}: it does not help in this setting."
            outcome[r["name"]] = "hurts"
        elif better and worse:
            text += f"Mixed: better on {', '.join(better)}, worse on {', '.join(worse)}; no overall win can be claimed."
            outcome[r["name"]] = "mixed"
        else:
            text += (
                "Every interval contains zero: the difference is within trial-sampling noise, so this budget "
                "gives no evidence either way" + (" (the point estimate favours augmentation)." if d_final < 0 else ".")
            )
            outcome[r["name"]] = "inconclusive"
        lines.append(text)
    return lines, outcome


HOW_TO = (
    "To train the bundled recipe (`recipes/shared_ti/conf/small.yaml`: LibriSpeech.train + DSPSpeech-20.train in "
    "one source) with augmentation, build a cache that holds augmented copies of the LibriSpeech train clips and "
    "the DSPSpeech-20 train originals (a second `prepare` into the same folder extends it):\n\n"
    "```bash\n"
    "D=${GE2E_DATA:-../shared/data}\n"
    "ge2e prepare $D/LibriSpeech --split-file $D/splits/LibriSpeech.train.txt --out cache/ti_aug "
    "--augment speed,noise,reverb\n"
    "ge2e prepare $D/DSPSpeech-20 --split-file $D/splits/DSPSpeech-20.train.txt --out cache/ti_aug\n"
    "```\n\n"
    "then set `cache: cache/ti_aug` on the training source (splits unchanged; `augmented: true` is the default) "
    "and keep the validation sources on `cache/ti` / `cache/kw` with `augmented: false`. (Adding "
    "`--augment speed,noise,reverb` to the DSPSpeech-20 line as well makes 5 cached copies of each of its train files.)"
)


def recommendation(outcome: dict[str, str]) -> str:
    """Whether the recipes should turn augmentation on, from the measured outcomes."""
    if not outcome:
        return "No comparison yet."
    if all(v == "helps" for v in outcome.values()):
        head = (
            "Augmentation lowered validation EER beyond trial noise here: turn it on in the text-independent "
            "recipe, and re-check with a second seed when CPU time allows."
        )
    elif any(v == "hurts" for v in outcome.values()):
        head = "Augmentation made validation EER worse here: keep it OFF in the recipes."
    else:
        head = (
            "No measured gain beyond noise: keep augmentation OFF by default in the recipes (the issue asks for it "
            "only where it helps validation EER), and re-run this A/B with a longer budget, a larger encoder or more "
            "seeds before changing the default."
        )
    return head + "\n\n" + HOW_TO


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=[BASELINE, "aug"])
    p.add_argument("--exp", default="exp/augment_ab")
    p.add_argument("--doc", default="docs/experiments/2026-12-07-augmentation-pilot.md")
    p.add_argument("--img", default="docs/img/augment_val_eer.png")
    args = p.parse_args()
    exp = Path(args.exp)
    runs = [read_run(exp, n) for n in args.runs if (exp / n / "metrics.csv").exists()]
    if not runs:
        raise SystemExit(f"no runs with a metrics.csv under {exp}")
    base = next((r for r in runs if r["name"] == BASELINE), runs[0])
    plot(runs, Path(args.img))
    c = runs[0]["cfg"]
    m = c.model
    val_pools = [SpeakerPool.from_source(src, 2) for src in c.val.sources]  # as train.py builds them
    val_splits = ", ".join(
        f"`{sp}`" + (f" ({len(pool)} speakers)" if len(src.splits) == 1 else "")
        for src, pool in zip(c.val.sources, val_pools, strict=True)
        for sp in src.splits
    )
    fewest = min(zip(val_pools, c.val.sources, strict=True), key=lambda ps: len(ps[0]))
    same_features = [identical_originals(base, r) for r in runs if r is not base]
    dev_lists = sorted({n for r in runs if r["dev"] for n in r["dev"]["final"]["lists"]})
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"

    out = [
        "# Does augmentation help? (A/B on validation EER)",
        "",
        "<!-- generated by recipes/augment_ab/report.py from exp/augment_ab/*; do not edit by hand -->",
        "",
        "`ge2e prepare --augment speed,noise,reverb` caches, per training file, speed-perturbed copies "
        f"({' and '.join(f'{f}x' for f in SPEED_FACTORS)}, resampled, so pitch moves too; each is a new "
        f"*pseudo-speaker* {' / '.join(f'`<spk>_sp{f}`' for f in SPEED_FACTORS)}, the Kaldi/VoxCeleb trick), one "
        f"copy with additive coloured noise (SNR {SNR_RANGE_DB[0]:g}-{SNR_RANGE_DB[1]:g} dB) and one reverberated "
        f"with a simulated room impulse response (RT60 {RT60_RANGE_S[0]:g}-{RT60_RANGE_S[1]:g} s); the last two keep "
        "the speaker. "
        "A training source uses them when its `augmented: true` (the default); validation and test sources set "
        "`augmented: false`.",
        "",
        "This page measures whether that lowers validation EER, with runs that differ only in the training data.",
        "",
        "## Setup",
        "",
        f"- Training speakers: {', '.join(f'`{sp}`' for sp in c.data.sources[0].splits)} only "
        f"({base['originals']} original clips, {base['speech_s']:.1f} s of speech each on average after VAD). "
        f"Same seed ({c.seed}), "
        f"encoder (LSTM {m.num_layers}x{m.hidden_size}, projection {m.proj_size or 'none'}), batches "
        f"N={c.data.speakers_per_batch} x M={c.data.utterances_per_speaker}, crops {c.data.min_frames}-"
        f"{c.data.max_frames} frames, {c.optim.name} lr {c.optim.lr}, {c.steps} steps, `short: {c.data.short}`, "
        f"`min_utterances: {c.data.min_utterances}`.",
        *[f"- {line}" for line in same_features if line],
        f"- Periodic validation EER (the `val_eer` column of metrics.csv, every {c.val.every} steps): mean over "
        f"{val_splits} of the EER of {c.val.trials} random same/different-speaker pairs (the same pairs for every "
        "run and step), original recordings only. These speakers are never trained on.",
        "- Official dev trial lists (" + (", ".join(f"`{n}`" for n in dev_lists) or "not scored yet") + ") scored "
        "with each run's final model (`score_dev.py`, features from the caches), compared run against run with a "
        f"paired bootstrap over trials ({BOOTSTRAP} resamples). best.pt is selected on these same speakers, so only "
        "the final model's dev EER is unbiased.",
        "- Reproduce: `bash recipes/augment_ab/run.sh` (stages: prepare, train, score, report).",
        "",
        "## Results",
        "",
        "| run | training data | speakers (pseudo) | utterances | steps | final val EER | best val EER (step) |"
        + "".join(f" {n} EER (final model) |" for n in dev_lists)
        + " wall-clock h |",
        "|---|---|---|---|---|---|---|" + "---|" * len(dev_lists) + "---|",
    ]
    for r in runs:
        fv = f"{pct(r['final_val'][1])} (step {r['final_val'][0]})" if r["final_val"] else "-"
        bv = f"{pct(r['best_val'][1])} ({r['best_val'][0]})" if r["best_val"] else "-"
        devs = ""
        for n in dev_lists:
            d = (r["dev"] or {}).get("final", {}).get("lists", {}).get(n)
            devs += f" {pct(d['eer'])} ({d['trials']} trials) |" if d else " - |"
        out.append(
            f"| `{r['name']}` | {describe(r)} | {r['speakers']} ({r['pseudo']}) | {r['utterances']} | "
            f"{r['steps']}/{r['target_steps']} | {fv} | {bv} |{devs} {r['hours']:.2f} |"
        )
    out += [
        "",
        f"Validation splits: {val_splits}. Training loss over the last {LOSS_WINDOW} steps: "
        + ", ".join(f"`{r['name']}` {np.mean([v for _, v in r['loss'][-LOSS_WINDOW:]]):.2f}" for r in runs if r["loss"])
        + " (with more speakers the GE2E task is harder, so losses are not comparable across runs).",
        "",
        "Periodic validation EER by step:",
        "",
        "| step |" + "".join(f" `{r['name']}` |" for r in runs),
        "|---|" + "---|" * len(runs),
    ]
    steps = sorted({s for r in runs for s, _ in r["val"]})
    for s in steps:
        cells = []
        for r in runs:
            v = dict(r["val"]).get(s)
            cells.append(pct(v) if v is not None else "-")
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    out += ["", f"![validation EER vs step]({os.path.relpath(args.img, Path(args.doc).parent)})", ""]

    out += ["## Conclusion", ""]
    conclusions, outcome = verdict(runs, base)
    out += [(c_ + "\n") for c_ in conclusions] or ["Only one run so far: nothing to compare.\n"]
    unfinished = [r["name"] for r in runs if r["steps"] < r["target_steps"]]
    out += [
        "Caveats: one seed per arm; a small encoder and a short budget (the runs are likely far from converged, and "
        f"augmentation usually pays off later, when the un-augmented model starts to overfit {base['utterances']} "
        "clips); training "
        "on LibriSpeech only while validating on other corpora (DSPSpeech-20 words, Speech Commands keywords), so "
        "this measures robustness to a domain shift as much as anything; validation sets with few speakers "
        f"({', '.join(fewest[1].splits)} has {len(fewest[0])}), so EER moves by points between evaluations, and "
        "the bootstrap intervals, which resample trials but not speakers (trials share speakers and files), are "
        "too narrow; the noise is synthetic "
        "coloured noise and the rooms are simulated (no MUSAN / RIR corpora here); the runs shared 2 CPU cores "
        "with other jobs, so wall-clock times are only indicative (the augmented run reads the same number of "
        "crops per step, so its per-step cost is the same)."
        + (f" Unfinished runs: {', '.join(unfinished)}." if unfinished else ""),
        "",
    ]
    out += ["## Recommendation", "", recommendation(outcome), ""]
    out += [f"_Generated at commit {commit} from {exp}/{{{','.join(r['name'] for r in runs)}}}._", ""]
    Path(args.doc).parent.mkdir(parents=True, exist_ok=True)
    Path(args.doc).write_text("\n".join(out))
    print(f"wrote {args.doc} and {args.img}")
    for line in conclusions:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

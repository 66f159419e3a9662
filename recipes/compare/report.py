"""Turn the outputs of recipes/compare/run.py (exp/compare/) into docs/results.md and docs/img/compare_*.png.

Every figure in the generated page is read from the run outputs: metrics.csv (training loss, per-step wall
clock, validation EER), config.yaml and eval/<split>/{report.json,scores.tsv}. The diarization table that
another tool writes between the ``<!-- diarization:start -->`` / ``<!-- diarization:end -->`` markers of
docs/results.md is kept as it is. Run from the repo root::

    .venv/bin/python recipes/compare/report.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ge2e.metrics import det_curve
from ge2e.plots import plot_det

START, END = "<!-- diarization:start -->", "<!-- diarization:end -->"
TI_RUNS = {"ti_te2e": "TE2E", "ti_ge2e_softmax": "GE2E softmax", "ti_ge2e_contrast": "GE2E contrast"}
KW_RUNS = {"kw_single": "single source", "kw_multireader": "MultiReader"}
TI_TESTS = ("LibriSpeech.test", "DSPSpeech-20.test", "DSPSpeech-20.test.enroll3")
KW_TESTS = ("speech_commands_v0.02_test.test",)


@dataclass
class Run:
    """One training run's curves and test reports."""

    name: str
    label: str
    config: dict
    steps: np.ndarray  # (S,) training steps logged
    elapsed: np.ndarray  # (S,) seconds of wall clock since the start of training, at each step
    val_steps: np.ndarray  # (V,) steps with a validation EER
    val_eer: np.ndarray  # (V,) validation EER (fraction)
    tests: dict[str, dict]  # split -> report.json

    @property
    def seconds_per_step(self) -> float:
        return float(self.elapsed[-1] / self.steps[-1])

    def time_to(self, target: float) -> tuple[int, float] | None:
        """(step, seconds) of the first validation at or below ``target``; None if never reached."""
        hits = np.flatnonzero(self.val_eer <= target + 1e-12)
        if not hits.size:
            return None
        step = int(self.val_steps[hits[0]])
        return step, float(self.elapsed[np.searchsorted(self.steps, step)])


def _elapsed(times: np.ndarray) -> np.ndarray:
    """Cumulative wall-clock seconds from per-step ``perf_counter`` stamps.

    A resumed run restarts the clock (a negative or huge gap); those gaps, and the first step (whose start is
    not logged), count as the median step time. Validation time is part of the step after it.
    """
    gaps = np.diff(times)
    median = float(np.median(gaps[gaps > 0])) if np.any(gaps > 0) else 0.0
    gaps = np.where((gaps <= 0) | (gaps > 50 * median), median, gaps)
    return np.cumsum(np.concatenate(([median], gaps)))


def load_run(root: Path, name: str, label: str) -> Run | None:
    folder = root / name
    if not (folder / "metrics.csv").is_file():
        return None
    with open(folder / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    steps = np.asarray([int(r["step"]) for r in rows])
    elapsed = _elapsed(np.asarray([float(r["time"]) for r in rows]))
    val = [(int(r["step"]), float(r["val_eer"])) for r in rows if r["val_eer"]]
    tests = {}
    for report in sorted((folder / "eval").glob("*/report.json")):
        tests[report.parent.name] = json.loads(report.read_text())
    config = yaml.safe_load((folder / "config.yaml").read_text())
    vs = np.asarray([s for s, _ in val], dtype=int)
    ve = np.asarray([e for _, e in val])
    return Run(name, label, config, steps, elapsed, vs, ve, tests)


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def rel(new: float, base: float) -> str:
    """Relative change of an error rate, e.g. ``-12.3%`` (lower is better)."""
    return f"{100 * (new - base) / base:+.1f}%" if base > 0 else "n/a"


def target_eer(runs: list[Run]) -> float:
    """The fixed validation EER for the time-to-target column: the best EER that every run reaches."""
    return max(float(r.val_eer.min()) for r in runs)


def _time_cell(run: Run, target: float) -> str:
    hit = run.time_to(target)
    return "not reached" if hit is None else f"{hit[1]:.0f} s (step {hit[0]})"


def ti_table(runs: list[Run]) -> list[str]:
    target = target_eer(runs)
    head = "| loss | LibriSpeech.test EER | DSPSpeech-20.test EER | DSPSpeech-20.test, 3-utt enrollment EER |"
    head += " minDCF(0.01) DSPSpeech-20.test | best val EER (step) | s/step | time to val EER " + pct(target) + " |"
    lines = [head, "|" + "---|" * 8]
    for r in runs:
        t = [r.tests.get(s) for s in TI_TESTS]
        cells = [pct(x["eer"]) + f" ({x['n_trials']})" if x else "-" for x in t]
        dcf = f"{t[1]['min_dcf_0.01']:.3f}" if t[1] else "-"
        best = int(np.argmin(r.val_eer))
        lines.append(
            f"| {r.label} | {' | '.join(cells)} | {dcf} | {pct(r.val_eer[best])} ({r.val_steps[best]}) "
            f"| {r.seconds_per_step:.2f} | {_time_cell(r, target)} |"
        )
    return lines


def kw_table(runs: list[Run]) -> list[str]:
    target = target_eer(runs)
    lines = [
        "| training | sources (weight) | test EER (trials scored / skipped) | minDCF(0.01) | minDCF(0.05) "
        f"| best val EER (step) | s/step | time to val EER {pct(target)} |",
        "|" + "---|" * 8,
    ]
    for r in runs:
        t = r.tests.get(KW_TESTS[0])
        sources = ", ".join(f"{_source_name(s)} ({s['weight']:g})" for s in r.config["data"]["sources"])
        best = int(np.argmin(r.val_eer))
        test = f"{pct(t['eer'])} ({t['n_trials']} / {t['skipped_trials']})" if t else "-"
        dcf = f"{t['min_dcf_0.01']:.3f} | {t['min_dcf_0.05']:.3f}" if t else "- | -"
        lines.append(
            f"| {r.label} | {sources} | {test} | {dcf} | {pct(r.val_eer[best])} ({r.val_steps[best]}) "
            f"| {r.seconds_per_step:.2f} | {_time_cell(r, target)} |"
        )
    return lines


def _source_name(source: dict) -> str:
    return "+".join(source["splits"]) + (f" [{source['label']}]" if source["label"] else "")


def plot_validation(runs: list[Run], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    for r in runs:
        by_step.plot(r.val_steps, 100 * r.val_eer, marker="o", markersize=3, label=r.label)
        seconds = r.elapsed[np.searchsorted(r.steps, r.val_steps)]
        by_time.plot(seconds / 60, 100 * r.val_eer, marker="o", markersize=3, label=r.label)
    by_step.set(xlabel="training step", ylabel="validation EER (%)", title=title)
    by_time.set(xlabel="wall time (min, shared CPU)")
    for ax in (by_step, by_time):
        ax.grid(True, linewidth=0.4)
    by_time.legend(fontsize="small")
    _save(fig, path)


def _save(fig, path: Path) -> None:  # atomic PNG write
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    os.replace(tmp, path)


def plot_dets(root: Path, runs: list[Run], split: str, path: Path) -> None:
    curves = {}
    for r in runs:
        scores_file = root / r.name / "eval" / split / "scores.tsv"
        if not scores_file.is_file():
            continue
        with open(scores_file, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        p_fa, p_miss, _ = det_curve([float(x["score"]) for x in rows], [int(x["label"]) for x in rows])
        curves[f"{r.label} ({pct(r.tests[split]['eer'])})"] = (p_fa, p_miss)
    if curves:
        plot_det(curves, path)


def keep_diarization(old: str) -> str:
    """The marked diarization block of the current page, or an empty pair of markers."""
    if START in old and END in old and old.index(START) < old.index(END):
        return old[old.index(START) : old.index(END) + len(END)]
    return f"{START}\n{END}"


def setup_lines(ti: list[Run], kw: list[Run]) -> list[str]:
    c, k = ti[0].config, kw[0].config
    m = c["model"]
    return [
        f"- Encoder (all runs): LSTM, {m['num_layers']} layer(s) of {m['hidden_size']} cells, no projection, "
        f"linear layer, d-vector size {m['hidden_size']}; Adam lr {c['optim']['lr']}, gradient clip "
        f"{c['optim']['grad_clip']}; seed {c['seed']} (one seed per run: differences of a few % relative are "
        "within run-to-run noise).",
        f"- Text-independent: train on {' + '.join(c['data']['sources'][0]['splits'])} (cache/ti), "
        f"N x M = {c['data']['speakers_per_batch']} x {c['data']['utterances_per_speaker']}, random crops of "
        f"{c['data']['min_frames']}-{c['data']['max_frames']} frames, {c['steps']} steps; validation EER on "
        f"{' + '.join(s['splits'][0] for s in c['val']['sources'])} ({c['val']['trials']} random pairs every "
        f"{c['val']['every']} steps). TE2E uses the same N x M batches (P = M - 1 enrollment utterances).",
        f"- Keywords: train on {k['data']['sources'][0]['splits'][0]} speakers, N x M = "
        f"{k['data']['speakers_per_batch']} x {k['data']['utterances_per_speaker']} per source, "
        f"{k['data']['min_frames']}-{k['data']['max_frames']}-frame segments (short keywords zero-padded), "
        f"{k['steps']} steps, GE2E softmax; validation EER on {k['val']['sources'][0]['splits'][0]}.",
        "- Tested with each run's final model at the fixed step budget (the dev splits, 4 DSPSpeech-20 and 24 "
        "Speech Commands speakers, are too small to pick checkpoints reliably), on the official test trial "
        "lists (`trials/<split>.txt`, count of scored trials in parentheses). Trials whose audio the front end "
        "rejects (no speech found by VAD) are skipped and counted.",
        "- Wall time: 2 CPU cores shared with the bundled model's training and other jobs, one thread per run: "
        "absolute seconds are inflated and noisy; compare runs with each other, not with other machines.",
    ]


def verdict_lines(ti: list[Run], kw: list[Run]) -> list[str]:
    out = [
        "- How much each run learned, validation EER at the first validation -> best: "
        + ", ".join(f"{r.label} {pct(r.val_eer[0])} -> {pct(r.val_eer.min())}" for r in [*ti, *kw] if r.val_eer.size)
        + ". A run whose validation EER barely moved has learned little in this budget: read the test EERs "
        "with that in mind."
    ]
    base = {r.label: r for r in ti}
    te2e = base.get("TE2E")
    if te2e:
        for label in ("GE2E softmax", "GE2E contrast"):
            r = base.get(label)
            if r is None:
                continue
            changes = [
                f"{split} {rel(r.tests[split]['eer'], te2e.tests[split]['eer'])}"
                for split in TI_TESTS
                if split in r.tests and split in te2e.tests
            ]
            out.append(f"- {label} vs TE2E, relative test-EER change: {', '.join(changes)}.")
        target = target_eer(ti)
        times = {r.label: r.time_to(target) for r in ti}
        out.append(
            f"- Time to the common validation EER of {pct(target)}: "
            + ", ".join(f"{k} {'not reached' if v is None else f'{v[1]:.0f} s'}" for k, v in times.items())
            + f"; seconds per step: {', '.join(f'{r.label} {r.seconds_per_step:.2f}' for r in ti)}."
        )
    out.append(
        "- Paper (abstract and Sec. 4): GE2E reduces EER by more than 10% relative to TE2E and training time by "
        "about 60%. The lines above are the same comparison at our scale; read them with the single-seed "
        "noise in mind."
    )
    runs = {r.name: r for r in kw}
    single, multi = runs.get("kw_single"), runs.get("kw_multireader")
    if single and multi and KW_TESTS[0] in single.tests and KW_TESTS[0] in multi.tests:
        out.append(
            f"- MultiReader vs single source, relative test-EER change on {KW_TESTS[0]}: "
            f"{rel(multi.tests[KW_TESTS[0]]['eer'], single.tests[KW_TESTS[0]]['eer'])} (paper, Sec. 4.1: about "
            "30% relative lower EER). A MultiReader step draws one batch per source, so it costs more per step "
            "(see s/step)."
        )
    return out


def build_page(root: Path, img: Path, out: Path, old: str) -> str:
    ti = [r for n, lab in TI_RUNS.items() if (r := load_run(root, n, lab))]
    kw = [r for n, lab in KW_RUNS.items() if (r := load_run(root, n, lab))]
    rel_img = os.path.relpath(img, out.parent)
    lines = [
        "# Results",
        "",
        "Generated by `recipes/compare/report.py` from the outputs of `recipes/compare/run.py` (configs in "
        "`recipes/compare/conf/`); do not edit by hand. Every figure is on the official splits of "
        "`../shared/data` (README there): trained on `train` speakers, validated on `dev`, tested on `test`.",
        "",
        "## The paper's comparison at CPU scale",
        "",
    ]
    if ti and kw:
        lines += [*setup_lines(ti, kw), ""]
    if ti:
        plot_validation(ti, img / "compare_ti_val.png", "text-independent")
        plot_dets(root, ti, "DSPSpeech-20.test", img / "compare_ti_det.png")
        lines += ["### TE2E vs GE2E (text-independent)", "", *ti_table(ti), ""]
        lines += [f"![validation EER]({rel_img}/compare_ti_val.png) ![DET]({rel_img}/compare_ti_det.png)", ""]
    if kw:
        plot_validation(kw, img / "compare_kw_val.png", "keywords")
        plot_dets(root, kw, KW_TESTS[0], img / "compare_kw_det.png")
        lines += ["### MultiReader vs single source (text-dependent keywords)", "", *kw_table(kw), ""]
        lines += [f"![validation EER]({rel_img}/compare_kw_val.png) ![DET]({rel_img}/compare_kw_det.png)", ""]
    if ti or kw:
        lines += ["### How this compares with the paper", "", *verdict_lines(ti, kw), ""]
    else:
        lines += ["No comparison runs found (run `recipes/compare/run.py` first).", ""]
    lines += ["## Diarization", "", keep_diarization(old), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="exp/compare", help="outputs of run.py (default exp/compare)")
    parser.add_argument("--out", default="docs/results.md")
    parser.add_argument("--img", default="docs/img")
    args = parser.parse_args()
    out = Path(args.out)
    old = out.read_text() if out.is_file() else ""
    page = build_page(Path(args.runs), Path(args.img), out, old)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page)
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

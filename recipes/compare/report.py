"""Write docs/results.md and docs/img/compare_*.png from the run records in recipes/compare/results/.

Every figure on the page is read from the records that run.py writes (one JSON per run: test EERs, CPU time,
validation curve): nothing is typed in. Intervals are 95% Student-t intervals over seeds; a paired difference
pairs the runs of one seed, which share their batches. The diarization section between the
``<!-- diarization:start -->`` / ``<!-- diarization:end -->`` markers, which another tool writes, is kept as
it is. Run from the repository root::

    .venv/bin/python recipes/compare/report.py
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import ARMS, KW_TESTS, RESULTS, SEEDS, TARGET, TI_TESTS  # noqa: E402

START, END = "<!-- diarization:start -->", "<!-- diarization:end -->"
LABELS = {
    "te2e": "TE2E",
    "softmax": "GE2E softmax",
    "contrast": "GE2E contrast",
    "softmax_inclusive": "GE2E softmax, inclusive centroid",
    "softmax_fixed_wb": "GE2E softmax, fixed w, b",
    "kw_target": f"target keyword only ({TARGET!r})",
    "kw_pooled": "pooled with every keyword",
    "kw_multireader": "MultiReader",
}
TI_ARMS = [a for a in ARMS if ARMS[a][2] == TI_TESTS]
KW_ARMS = [a for a in ARMS if ARMS[a][2] == KW_TESTS]
SHARED = TI_TESTS[:5]  # the five in-domain lists; TI_TESTS[5] is the out-of-domain one
LEARNED = 1 / 3  # a run "learned" when its validation EER fell by at least this fraction from the first one


@dataclass
class Claim:
    """A comparison the paper makes: ``arm`` against ``base`` on ``metric``; ``size`` the claimed relative gain."""

    text: str
    arm: str
    base: str
    size: float  # relative EER reduction the paper reports (0: the direction only)


CLAIMS = [
    Claim("GE2E softmax lowers EER by more than 10% relative to TE2E (abstract, Table 3)", "softmax", "te2e", 0.10),
    Claim("GE2E contrast lowers EER by more than 10% relative to TE2E (Table 3)", "contrast", "te2e", 0.10),
    Claim("Leaving e_ji out of its own centroid (Eq. 8) helps (Sec. 2.1)", "softmax", "softmax_inclusive", 0.0),
    Claim("Learned w, b help (Sec. 2.1)", "softmax", "softmax_fixed_wb", 0.0),
    Claim(
        "MultiReader lowers the target keyword's EER by about 30% relative (Table 1)",
        "kw_multireader",
        "kw_target",
        0.30,
    ),
    Claim("MultiReader beats pooling the sources (Sec. 2.3)", "kw_multireader", "kw_pooled", 0.0),
]


def load(results: Path) -> dict[str, dict[int, dict]]:
    """arm -> seed -> record."""
    out: dict[str, dict[int, dict]] = {arm: {} for arm in ARMS}
    for path in sorted(results.glob("*.json")):
        record = json.loads(path.read_text())
        out[record["arm"]][record["seed"]] = record
    return out


def score(record: dict) -> float:
    """The number a claim is decided on: mean test EER over the shared lists (TI) or the target's list (TD)."""
    lists = SHARED if record["arm"] in TI_ARMS else KW_TESTS
    return float(np.mean([record["tests"][name]["eer"] for name in lists]))


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval; the interval is nan with fewer than two values."""
    a = np.asarray(values, dtype=float)
    if len(a) < 2:
        return float(a.mean()) if len(a) else np.nan, np.nan, np.nan
    half = stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a))
    return float(a.mean()), float(a.mean() - half), float(a.mean() + half)


def cell(values: list[float], scale: float = 100, digits: int = 2, unit: str = "") -> str:
    mean, low, high = interval(values)
    if np.isnan(mean):
        return "-"
    if np.isnan(low):
        return f"{scale * mean:.{digits}f}{unit} (1 seed)"
    return f"{scale * mean:.{digits}f}{unit} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def learned(record: dict) -> bool:
    val = record["curve"]["val_eer"]
    return len(val) > 1 and min(val) <= (1 - LEARNED) * val[0]


def arm_table(runs: dict[str, dict[int, dict]], arms: list[str], lists: tuple[str, ...]) -> list[str]:
    head = ["arm", "seeds", *lists, "mean of shared lists" if len(lists) > 1 else None, "steps", "CPU s/step"]
    head = [h for h in head if h]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in arms:
        recs = [runs[arm][s] for s in sorted(runs[arm])]
        if not recs:
            continue
        row = [LABELS[arm], str(len(recs))]
        row += [cell([r["tests"][name]["eer"] for r in recs]) for name in lists]
        if len(lists) > 1:
            row.append(cell([score(r) for r in recs]))
        row.append(cell([r["steps"] for r in recs], scale=1, digits=0))
        row.append(cell([r["cpu_time"] / r["steps"] for r in recs], scale=1, digits=3))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def paired(runs: dict[str, dict[int, dict]], arm: str, base: str) -> tuple[list[float], list[float]]:
    """Per shared seed: the EER difference arm - base (points) and the relative change."""
    seeds = sorted(set(runs[arm]) & set(runs[base]))
    diff = [score(runs[arm][s]) - score(runs[base][s]) for s in seeds]
    relative = [score(runs[arm][s]) / score(runs[base][s]) - 1 for s in seeds]
    return diff, relative


def verdict(claim: Claim, relative: list[float]) -> str:
    mean, low, high = interval(relative)
    if len(relative) < 2:
        return "inconclusive at this scale (fewer than 2 seeds so far)"
    if high < 0:
        if claim.size and -mean < claim.size:
            return f"direction reproduced, smaller than the paper's {100 * claim.size:.0f}% ({100 * -mean:.0f}%)"
        return "reproduced"
    if low > 0:
        return "not reproduced (the opposite holds at this scale)"
    return "inconclusive at this scale (the interval includes no change)"


def claims_table(runs: dict[str, dict[int, dict]]) -> list[str]:
    lines = [
        "| claim | seeds | EER difference, points | relative change | verdict |",
        "|---|---|---|---|---|",
    ]
    for claim in CLAIMS:
        diff, relative = paired(runs, claim.arm, claim.base)
        if not diff:
            lines.append(f"| {claim.text} | 0 | - | - | not run yet |")
            continue
        change = cell(relative, digits=1, unit="%")
        lines.append(f"| {claim.text} | {len(diff)} | {cell(diff)} | {change} | {verdict(claim, relative)} |")
    return lines


def time_to_te2e(runs: dict[str, dict[int, dict]]) -> list[str]:
    """CPU seconds each arm's run takes to reach the best validation EER of the TE2E run of its seed."""
    lines = ["| arm | CPU s to TE2E's best validation EER (per seed) | TE2E's own |", "|---|---|---|"]
    for arm in TI_ARMS:
        cells, own = [], []
        for seed in sorted(set(runs[arm]) & set(runs["te2e"])):
            base = runs["te2e"][seed]["curve"]
            target = min(base["val_eer"])
            own.append(base["val_cpu_time"][int(np.argmin(base["val_eer"]))])
            curve = runs[arm][seed]["curve"]
            hit = [t for t, e in zip(curve["val_cpu_time"], curve["val_eer"], strict=True) if e <= target]
            cells.append(f"{hit[0]:.0f}" if hit else "never")
        if cells:
            lines.append(f"| {LABELS[arm]} | {', '.join(cells)} | {', '.join(f'{t:.0f}' for t in own)} |")
    return lines


def learning_lines(runs: dict[str, dict[int, dict]]) -> list[str]:
    out = []
    for arm in ARMS:
        for seed, r in sorted(runs[arm].items()):
            val = r["curve"]["val_eer"]
            mark = "" if learned(r) else " (**fell by less than a third**)"
            out.append(f"{LABELS[arm]} seed {seed}: {100 * val[0]:.1f}% -> {100 * min(val):.1f}%{mark}")
    return out


def plot_validation(runs: dict[str, dict[int, dict]], arms: list[str], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    colors = {arm: f"C{i}" for i, arm in enumerate(arms)}
    styles = ["-", "--", ":"]
    for arm in arms:
        for seed, r in sorted(runs[arm].items()):
            c = r["curve"]
            ax.plot(np.asarray(c["val_cpu_time"]) / 60, 100 * np.asarray(c["val_eer"]), styles[seed % 3],
                    color=colors[arm], label=f"{LABELS[arm]}, seed {seed}")  # fmt: skip
    ax.set_xlabel("CPU minutes of training (one core)")
    ax.set_ylabel("validation EER (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def figure(runs: dict[str, dict[int, dict]], arms: list[str], path: Path, title: str) -> str:
    """The validation plot of ``arms`` and its Markdown, or a line saying there is none yet."""
    if not any(runs[arm] for arm in arms):
        path.unlink(missing_ok=True)
        return "(No run of these arms is recorded yet.)"
    plot_validation(runs, arms, path, title)
    return f"![validation EER against CPU time, {title}](img/{path.name})"


def setup_lines(runs: dict[str, dict[int, dict]]) -> list[str]:
    out = []
    for conf, arms in (("ti.yaml", TI_ARMS), ("kw_target.yaml", KW_ARMS)):
        cfg = yaml.safe_load((HERE / "conf" / conf).read_text())
        d = cfg["data"]
        sources = ", ".join(sorted({s for src in d["sources"] for s in src["splits"]}))
        val = ", ".join(s for src in cfg["val"]["sources"] for s in src["splits"])
        out.append(
            f"- `{conf}` ({'; '.join(LABELS[a] for a in arms)}): encoder preset `{cfg['preset']}`, trained on "
            f"{sources}; N x M = {d['speakers_per_batch']} x {d['utterances_per_speaker']}, crops of "
            f"{d['min_frames']}-{d['max_frames']} frames; {cfg['optim']['name']} lr {cfg['optim']['lr']}; "
            f"{cfg['cpu_budget_s']:.0f} s of one core's CPU time per run; validation EER on {val} every "
            f"{cfg['val']['every']} steps."
        )
    return out


def build_page(runs: dict[str, dict[int, dict]], img: Path, old: str) -> str:
    done = sum(len(v) for v in runs.values())
    lines = [
        "# Results",
        "",
        "Generated by `recipes/compare/report.py` from the run records in `recipes/compare/results/`, which "
        "`recipes/compare/run.sh` writes; do not edit by hand. Every figure is on the official splits of the "
        "shared data: trained on `train` speakers, validated on `dev`, tested on `test`.",
        "",
        "## The paper's claims at an equal CPU budget",
        "",
        f"Runs recorded: {done} of {len(ARMS) * len(SEEDS)} ({len(ARMS)} arms x {len(SEEDS)} seeds). Each run "
        "has the same CPU time; the runs of one seed share their batches. Tested with each run's final model.",
        "",
        *setup_lines(runs),
        "",
        "### Verdicts",
        "",
        "The number decided on: the mean test EER over the five shared lists (text-independent) or the target "
        "keyword's test EER (keywords), as a paired difference per seed; mean [95% interval over seeds].",
        "",
        *claims_table(runs),
        "",
        "### Text-independent: test EER (%), mean [95% interval over seeds]",
        "",
        *arm_table(runs, TI_ARMS, TI_TESTS),
        "",
        "`arabic_speech_commands.test` is out of domain: no run trains on that corpus.",
        "",
        "Training time: CPU seconds each run takes to reach the best validation EER of the TE2E run of its seed "
        "(the paper: GE2E cuts training time by about 60%).",
        "",
        *time_to_te2e(runs),
        "",
        figure(runs, TI_ARMS, img / "compare_ti_val.png", "text-independent arms"),
        "",
        "### Text-dependent keywords: MultiReader",
        "",
        *arm_table(runs, KW_ARMS, KW_TESTS),
        "",
        figure(runs, KW_ARMS, img / "compare_kw_val.png", f"keyword {TARGET!r}"),
        "",
        "### Did every run learn?",
        "",
        "Validation EER at the first validation -> best; a run whose EER fell by less than a third is marked. The "
        "first validation comes after the first `val.every` steps (100 text-independent, 50 keyword), when a GE2E "
        "run has already left chance (50%) far behind, so the rule is strict for the runs that learn fastest.",
        "",
        *[f"- {line}" for line in learning_lines(runs)],
        "",
        "## Diarization",
        "",
    ]
    kept = old[old.index(START) : old.index(END) + len(END)] if START in old and END in old else f"{START}\n{END}"
    return "\n".join(lines) + kept + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--out", default="docs/results.md")
    parser.add_argument("--img", default="docs/img")
    args = parser.parse_args()
    out = Path(args.out)
    old = out.read_text() if out.exists() else ""
    page = build_page(load(Path(args.results)), Path(args.img), old)
    out.write_text(page)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

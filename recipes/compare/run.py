"""The paper's claims at an equal CPU budget, with seeds: train, test and record one run at a time.

Arms (configs in conf/, each run one seed):

- Text-independent (conf/ti.yaml, the bundled model's encoder and training data, 30 minutes of one core per
  run): TE2E, GE2E softmax, GE2E contrast, and the ablations of GE2E softmax: the inclusive centroid instead of
  Eq. 8's leave-one-out one, and w, b fixed at 10, -5. Tested on the five shared test lists and on the
  out-of-domain ``arabic_speech_commands.test``.
- Text-dependent (conf/kw_*.yaml, the paper's keyword model on 80-frame segments): the target keyword alone,
  pooled with every keyword, and MultiReader. Tested on the target keyword's test trials.

A run trains in ``exp/compare/<run>/`` (resumable from its last.pt), is tested with its final model (the
budget's end: the same compute for every arm), and leaves ``results/<run>.json`` (curves, test EERs, CPU time),
which is committed: a run whose record exists is done, so the work spreads over sessions and machines.
``report.py`` writes docs/results.md from those records. ``run.sh`` calls this file; by hand::

    .venv/bin/python recipes/compare/run.py --list              # what is left, in the order it runs
    .venv/bin/python recipes/compare/run.py te2e_s0 softmax_s0  # these runs
    .venv/bin/python recipes/compare/run.py                     # every run that has no record yet
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

import torch

from ge2e.config import apply_overrides, load_config
from ge2e.data.splits import data_root
from ge2e.evaluate import EmbeddingStore, EvalOptions, EvalTrial, evaluate, list_trials, model_fingerprint
from ge2e.files import atomic_write
from ge2e.model import SpeakerEncoder
from ge2e.train import train

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SEEDS = (0, 1, 2)
TI_TESTS = (
    "LibriSpeech.test",
    "DSPSpeech-20.test",
    "speechocean762.test",
    "wuw2.test",
    "speech_commands_v0.02_test.test",
    "arabic_speech_commands.test",
)
TARGET = "yes"  # the keyword of the text-dependent arms (conf/kw_*.yaml)
KW_TESTS = (f"speech_commands_v0.02_test.test:{TARGET}",)
# Feature caches holding the test files (run.sh's stage 1); files found in none are read from the audio
FEATURES = ["cache/all", "cache/ood_eval"]
# arm -> (config, overrides, test lists)
ARMS: dict[str, tuple[str, list[str], tuple[str, ...]]] = {
    "te2e": ("ti.yaml", ["loss.method=te2e"], TI_TESTS),
    "softmax": ("ti.yaml", ["loss.method=softmax"], TI_TESTS),
    "contrast": ("ti.yaml", ["loss.method=contrast"], TI_TESTS),
    "softmax_inclusive": ("ti.yaml", ["loss.method=softmax", "loss.centroid=inclusive"], TI_TESTS),
    "softmax_fixed_wb": ("ti.yaml", ["loss.method=softmax", "loss.learn_scale=false"], TI_TESTS),
    "kw_target": ("kw_target.yaml", [], KW_TESTS),
    "kw_pooled": ("kw_pooled.yaml", [], KW_TESTS),
    "kw_multireader": ("kw_multireader.yaml", [], KW_TESTS),
}


def all_runs() -> list[str]:
    """Every run, seed-major: each seed completes the paper's main comparisons before the next seed starts."""
    return [f"{arm}_s{seed}" for seed in SEEDS for arm in ARMS]


def split_run(run: str) -> tuple[str, int]:
    arm, _, seed = run.rpartition("_s")
    if arm not in ARMS or not seed.isdigit():
        raise SystemExit(f"run.py: unknown run {run!r} (expected <arm>_s<seed>, arms: {', '.join(ARMS)})")
    return arm, int(seed)


def test_trials(name: str, root: Path) -> list[EvalTrial]:
    """An official trial list, or for ``<corpus>.<split>:<keyword>`` every pair of that split's speakers' files of
    the keyword: the official list holds too few pairs of one keyword (82 for "yes") to tell arms apart."""
    split, _, keyword = name.partition(":")
    if not keyword:
        return list_trials(root / "trials" / f"{split}.txt", root)
    corpus = split.rsplit(".", 1)[0]
    speakers = set((root / "splits" / f"{split}.txt").read_text().split())
    files = sorted(p for p in (root / corpus / keyword).glob("*_nohash_*") if p.name.split("_")[0] in speakers)
    return [
        EvalTrial(int(a.name.split("_")[0] == b.name.split("_")[0]), (str(a.resolve()),), str(b.resolve()))
        for i, a in enumerate(files)
        for b in files[i + 1 :]
    ]


def read_curve(metrics: Path) -> dict[str, list]:
    """Per-step CPU time and loss, and the validation EERs with the CPU time they were reached at."""
    with metrics.open(newline="") as f:
        rows = list(csv.DictReader(f))
    val = [r for r in rows if r["val_eer"]]
    return {
        "step": [int(r["step"]) for r in rows],
        "cpu_time": [round(float(r["cpu_time"]), 3) for r in rows],
        "loss": [round(float(r["loss"]), 5) for r in rows],
        "val_step": [int(r["step"]) for r in val],
        "val_cpu_time": [round(float(r["cpu_time"]), 3) for r in val],
        "val_eer": [float(r["val_eer"]) for r in val],
    }


def run_one(run: str, out_root: Path, root: Path, extra: list[str]) -> dict:
    arm, seed = split_run(run)
    config, overrides, tests = ARMS[arm]
    out = out_root / run
    cfg = apply_overrides(load_config(HERE / "conf" / config), [*overrides, f"seed={seed}", f"out_dir={out}", *extra])
    if not (out / "model.pt").exists():
        logging.info("%s: training (resumes from last.pt when present)", run)
        train(cfg, progress=False)
    model = SpeakerEncoder.load(out / "model.pt")
    store = EmbeddingStore(out / "eval" / "embeddings.npz", model_fingerprint(model))
    options = EvalOptions(features=[f for f in FEATURES if Path(f).is_dir()])
    results = {}
    for name in tests:
        report, _ = evaluate(model, test_trials(name, root), store, options)
        results[name] = {
            "eer": report["eer"],
            "min_dcf_0.01": report["min_dcf_0.01"],
            "n_trials": report["n_trials"],
            "n_skipped": report["skipped_trials"],
        }
        logging.info("%s %s: EER %.2f%% on %d trials", run, name, 100 * report["eer"], report["n_trials"])
    store.save()
    curve = read_curve(out / "metrics.csv")
    return {
        "run": run,
        "arm": arm,
        "seed": seed,
        "config": config,
        "overrides": [*overrides, *extra],
        "steps": model.meta["step"],
        "cpu_time": model.meta["cpu_time"],
        "cpu_budget_s": cfg.cpu_budget_s,
        "torch_threads": torch.get_num_threads(),
        "tests": results,
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", help="runs to do, <arm>_s<seed> (default: every run with no record)")
    parser.add_argument("--list", action="store_true", help="print the runs left to do and stop")
    parser.add_argument("--out", default="exp/compare", help="training output root (default exp/compare)")
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides (smoke tests only)")
    parser.add_argument("--results", default=str(RESULTS), help="where run records go (default results/)")
    args = parser.parse_args()
    results = Path(args.results)
    todo = args.runs or [r for r in all_runs() if not (results / f"{r}.json").exists()]
    for run in todo:
        split_run(run)
    if args.list:
        print("\n".join(todo))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(1)  # one core per run: the CPU budget is one core's time
    root = data_root()
    for run in todo:
        record = run_one(run, Path(args.out), root, args.set)
        text = json.dumps(record) + "\n"
        results.mkdir(parents=True, exist_ok=True)
        atomic_write(results / f"{run}.json", lambda f, t=text: f.write(t), "w")
        logging.info("%s: recorded in %s", run, results / f"{run}.json")


if __name__ == "__main__":
    main()

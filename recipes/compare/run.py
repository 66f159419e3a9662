"""The paper's comparisons, reproduced on the shared data (GE2E paper, Tables 1-3, scaled down to a shared CPU).

1. Text-independent: TE2E vs GE2E-softmax vs GE2E-contrast, same encoder, data, seed, batches and step budget
   (conf/ti.yaml; only ``loss.method`` differs). Test: official LibriSpeech.test and DSPSpeech-20.test trial
   lists, plus DSPSpeech-20.test speakers with the paper's enrollment (3 utterances averaged per speaker).
2. Text-dependent keywords: single-source vs MultiReader training (conf/kw_single.yaml, conf/kw_multireader.yaml),
   both with GE2E-softmax. Test: official speech_commands_v0.02_test.test trial list (same-keyword pairs).

Every run is resumable (``train`` resumes from ``<out>/last.pt``; a finished run is skipped), writes under
``exp/compare/<run>/`` and is tested with its final model (``model.pt``, the fixed step budget: the dev splits
are too small to pick checkpoints reliably). Then ``report.py`` turns the outputs into docs/results.md.
Run from the repo root::

    nice -n 15 .venv/bin/python recipes/compare/run.py > exp/compare/run.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch

from ge2e.config import apply_overrides, load_config
from ge2e.data.cache import FeatureCache
from ge2e.data.readers import Utterance
from ge2e.data.splits import data_root, resolve_speakers
from ge2e.evaluate import (
    EmbeddingStore,
    EvalOptions,
    corpus_trials,
    evaluate,
    list_trials,
    model_fingerprint,
    write_outputs,
)
from ge2e.model import SpeakerEncoder
from ge2e.train import train

HERE = Path(__file__).resolve().parent
TI_TESTS = ("LibriSpeech.test", "DSPSpeech-20.test")
KW_TESTS = ("speech_commands_v0.02_test.test",)
# run name -> (config, overrides, official trial lists to test on, feature cache of their files)
RUNS: dict[str, tuple[str, list[str], tuple[str, ...], str]] = {
    "ti_te2e": ("ti.yaml", ["loss.method=te2e"], TI_TESTS, "cache/ti"),
    "ti_ge2e_softmax": ("ti.yaml", ["loss.method=softmax"], TI_TESTS, "cache/ti"),
    "ti_ge2e_contrast": ("ti.yaml", ["loss.method=contrast"], TI_TESTS, "cache/ti"),
    "kw_single": ("kw_single.yaml", [], KW_TESTS, "cache/kw"),
    "kw_multireader": ("kw_multireader.yaml", [], KW_TESTS, "cache/kw"),
}
ENROLL_SPLIT = "DSPSpeech-20.test"  # corpus-mode test of the TI runs: the paper's K-utterance enrollment
ENROLL_K = 3


def run_training(name: str, out_root: Path, extra: list[str]) -> Path:
    config, overrides, _, _ = RUNS[name]
    cfg = apply_overrides(load_config(HERE / "conf" / config), [*overrides, f"out_dir={out_root / name}", *extra])
    out = Path(cfg.out_dir)
    if (out / "model.pt").exists():
        logging.info("%s: already trained, skipping", name)
    else:
        logging.info("%s: training (resumes from last.pt when present)", name)
        train(cfg, progress=False)
    return out


def test_run(name: str, out: Path) -> None:
    """Test EER of ``out/model.pt`` on the official trial lists (and the enrollment protocol for TI runs)."""
    _, _, tests, cache_dir = RUNS[name]
    model = SpeakerEncoder.load(out / "model.pt")
    store = EmbeddingStore(out / "eval" / "embeddings.npz", model_fingerprint(model))
    options = EvalOptions(features=[cache_dir])
    for split in tests:
        trials = list_trials(data_root() / "trials" / f"{split}.txt", data_root())
        report, scored = evaluate(model, trials, store, options)
        _save(out / "eval" / split, {"split": split, "mode": "trials", "model": str(out / "model.pt")}, report, scored)
    if name.startswith("ti_"):
        cache = FeatureCache(cache_dir)
        keep = resolve_speakers([ENROLL_SPLIT])
        utts = [Utterance(u.path, u.speaker, u.label, u.corpus) for u in cache.utterances if u.key in keep]
        trials, _ = corpus_trials(utts, ENROLL_K, seed=0)
        report, scored = evaluate(model, trials, store, options)
        info = {"split": ENROLL_SPLIT, "mode": "corpus", "enroll": ENROLL_K, "model": str(out / "model.pt")}
        _save(out / "eval" / f"{ENROLL_SPLIT}.enroll{ENROLL_K}", info, report, scored)
    store.save()


def _save(folder: Path, info: dict, report: dict, scored) -> None:
    write_outputs(folder, {**info, **report}, scored, title=info["split"])
    logging.info("%s %s: EER %.2f%% on %d trials", folder.parent.parent.name, folder.name, 100 * report["eer"],
                 report["n_trials"])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--out", default="exp/compare", help="output root (default exp/compare)")
    parser.add_argument("--set", nargs="*", default=[], help="extra config overrides for every run, e.g. steps=20")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(1)  # the machine is shared: one core per run
    os.environ.setdefault("GE2E_DATA", str(data_root()))
    out_root = Path(args.out)
    for name in args.runs:
        out = run_training(name, out_root, args.set)
        test_run(name, out)
    (out_root / "runs.json").write_text(json.dumps({n: list(RUNS[n][:2]) for n in args.runs}, indent=1))


if __name__ == "__main__":
    main()

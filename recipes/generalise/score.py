"""The generalisation benchmark: a model's in-domain dev score beside its out-of-domain one, and paired comparisons.

- In-domain: the four official dev lists of the training corpora.
- Out of domain (what model choices are made on): ``arabic_speech_commands.dev`` (a language, speakers and
  recording setups no training corpus has) and each condition of ``stress.py`` (telephone codecs, short test
  sides, babble, reverberation, loudness) applied to the dev lists. The out-of-domain mean weights these eight
  components equally (a condition's EER is its mean over the four lists).

Score models (``bundled`` is the default int8 model, ``bundled-float32`` its float checkpoint, ``resemblyzer``
Resemblyzer's shipped encoder; anything else is a checkpoint or export path), writing
``benchmarks/results/generalise/<name>.json.gz`` with every trial's score::

    .venv/bin/python recipes/generalise/score.py bundled --name v6
    .venv/bin/python recipes/generalise/score.py exp/run/best.pt --name candidate

Choices are made on dev. The model card's figures are the same benchmark on the test side: the five test lists,
``arabic_speech_commands.test`` and the stressed test lists (``stress.py --split test``)::

    .venv/bin/python recipes/generalise/score.py bundled --name v6.test --split test

Compare two scored models trial for trial (95% paired bootstrap over enrolment speakers, as ``augment_ab.py``)::

    .venv/bin/python recipes/generalise/score.py --compare v6 candidate
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stress import CONDITIONS, LISTS

from ge2e.data.cache import FeatureCache
from ge2e.data.splits import data_root
from ge2e.evaluate import (
    EmbeddingStore,
    EvalOptions,
    EvalTrial,
    Scored,
    evaluate,
    list_trials,
    model_fingerprint,
    score_trials,
)
from ge2e.files import atomic_write
from ge2e.metrics import bootstrap_eer_differences, eer
from ge2e.pretrained import load_model

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks/results/generalise"
OOD_CORPUS = "arabic_speech_commands"
# Features of the clean files (recipes/compare/run.sh, stage 1) and, when prepared, of the stressed ones (stress.py's
# copies through `ge2e prepare`: the front end once instead of once per model scored)
CACHES = ("cache/all", "cache/ood_eval", "cache/stress_feats")
RESAMPLES = 1000


def components(split: str = "dev") -> dict[str, list[str]]:
    """Out-of-domain component -> the trial lists it averages (``<list>.<condition>`` for stressed ones)."""
    out = {f"{OOD_CORPUS}.{split}": [f"{OOD_CORPUS}.{split}"]}
    out.update({c: [f"{name}.{c}" for name in LISTS[split]] for c in CONDITIONS})
    return out


def list_names(split: str = "dev") -> list[str]:
    """Every trial list the benchmark scores on ``split``: the in-domain lists, then the out-of-domain ones."""
    return [*LISTS[split], *(n for lists in components(split).values() for n in lists)]


def list_path(name: str, root: Path, stress_dir: Path, split: str = "dev") -> Path:
    stressed = stress_dir / split / f"{name}.txt"
    return stressed if name.rsplit(".", 1)[-1] in CONDITIONS else root / "trials" / f"{name}.txt"


def speaker_lookup() -> dict[str, str]:
    """Clean audio path -> speaker key, for the bootstrap's groups (a stressed trial's enrolment side is clean)."""
    known: dict[str, str] = {}
    for cache in CACHES:
        if Path(cache).is_dir():
            known.update({os.path.realpath(u.path): u.key for u in FeatureCache(cache).utterances if not u.augment})
    return known


def scorer(spec: str) -> tuple[Callable[[list[EvalTrial]], tuple[Scored, int]], str]:
    """A function scoring trials with the model ``spec`` (and counting the files it refused), and its fingerprint.
    ``resemblyzer`` is Resemblyzer with its own front end (``pip install 'ge2e[bench]'``)."""
    if spec == "resemblyzer":
        sys.path.insert(0, str(REPO / "benchmarks"))
        from resemblyzer_eer import embed_all, import_resemblyzer

        resemblyzer = import_resemblyzer()
        encoder, store = resemblyzer.VoiceEncoder("cpu", verbose=False), EmbeddingStore(None, "resemblyzer")

        def theirs(trials: list[EvalTrial]) -> tuple[Scored, int]:
            errors = embed_all(encoder, resemblyzer.preprocess_wav, [p for t in trials for p in (*t.enroll, t.test)],
                               store)  # fmt: skip
            return score_trials(trials, store), len(errors)

        return theirs, "resemblyzer"
    model = load_model(int8=spec == "bundled") if spec in ("bundled", "bundled-float32") else load_model(spec)
    store = EmbeddingStore(None, model_fingerprint(model))
    options = EvalOptions(features=[c for c in CACHES if Path(c).is_dir()])

    def ours(trials: list[EvalTrial]) -> tuple[Scored, int]:
        report, scored = evaluate(model, trials, store, options)
        return scored, len(report["bad_files"])

    return ours, model_fingerprint(model)


def score_model(spec: str, root: Path, stress_dir: Path, split: str = "dev") -> dict[str, Any]:
    score, fingerprint = scorer(spec)
    speakers = speaker_lookup()
    lists = {}
    for name in list_names(split):
        scored, refused = score(list_trials(list_path(name, root, stress_dir, split), root))
        lists[name] = {
            "eer": eer(scored.scores, scored.labels)[0],
            "skipped_trials": scored.skipped,
            "refused_files": refused,
            "trials": [[t.enroll[0], t.test] for t in scored.trials],
            "scores": np.round(scored.scores, 5).tolist(),
            "labels": scored.labels.astype(int).tolist(),
            "groups": [speakers.get(os.path.realpath(t.enroll[0]), t.enroll[0]) for t in scored.trials],
        }
        print(f"{spec} {name}: EER {100 * lists[name]['eer']:.2f}% ({len(scored.labels)} trials, "
              f"{scored.skipped} skipped)", flush=True)  # fmt: skip
    return {"model": spec, "fingerprint": fingerprint, "split": split, "lists": lists, **summary(lists, split)}


def summary(lists: dict[str, Any], split: str = "dev") -> dict[str, Any]:
    in_domain = {n: lists[n]["eer"] for n in LISTS[split]}
    ood = {c: float(np.mean([lists[n]["eer"] for n in names])) for c, names in components(split).items()}
    return {
        "in_domain": in_domain,
        "in_domain_mean": float(np.mean(list(in_domain.values()))),
        "out_of_domain": ood,
        "out_of_domain_mean": float(np.mean(list(ood.values()))),
    }


def paired(a: dict[str, Any], b: dict[str, Any], name: str, seed: int) -> tuple[float, np.ndarray]:
    """EER(b) - EER(a) on the trials both scored, and its bootstrap draws (enrolment speakers resampled)."""
    la, lb = a["lists"][name], b["lists"][name]
    index_b = {tuple(t): i for i, t in enumerate(lb["trials"])}
    both = [(i, index_b[tuple(t)]) for i, t in enumerate(la["trials"]) if tuple(t) in index_b]
    ia, ib = (np.asarray(x) for x in zip(*both, strict=True))
    sa, sb = np.asarray(la["scores"])[ia], np.asarray(lb["scores"])[ib]
    labels, groups = np.asarray(la["labels"])[ia], np.asarray(la["groups"])[ia]
    diff = eer(sb, labels)[0] - eer(sa, labels)[0]
    return diff, bootstrap_eer_differences(sa, sb, labels, groups, RESAMPLES, seed=seed)


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Differences b - a per in-domain list, per out-of-domain component and for both means, with intervals."""
    split = split_of(a)
    if split_of(b) != split:
        raise SystemExit(f"score.py: {a['model']} was scored on {split}, {b['model']} on {split_of(b)}")
    per = {n: paired(a, b, n, seed=k) for k, n in enumerate(list_names(split))}
    n_draws = min(len(d) for _, d in per.values())

    def mean_of(lists: list[str]) -> tuple[float, np.ndarray]:
        return float(np.mean([per[n][0] for n in lists])), np.mean([per[n][1][:n_draws] for n in lists], axis=0)

    rows = {n: mean_of([n]) for n in LISTS[split]}
    rows.update({c: mean_of(lists) for c, lists in components(split).items()})
    in_diff, in_draws = mean_of(list(LISTS[split]))
    ood = [mean_of(lists) for lists in components(split).values()]
    rows["in-domain mean"] = (in_diff, in_draws)
    rows["out-of-domain mean"] = (float(np.mean([d for d, _ in ood])), np.mean([d for _, d in ood], axis=0))
    return {k: {"diff": d, "lo": float(np.percentile(x, 2.5)), "hi": float(np.percentile(x, 97.5))}
            for k, (d, x) in rows.items()}  # fmt: skip


def split_of(result: dict[str, Any]) -> str:
    return result.get("split", "dev")  # results from before the test side was scored are dev ones


def load_result(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json.gz"
    if not path.is_file():
        raise SystemExit(f"score.py: {path}: no such result (score the model first)")
    return json.loads(gzip.decompress(path.read_bytes()))


def values(result: dict[str, Any]) -> dict[str, float]:
    """Row name -> EER of one result: the dev lists, the out-of-domain components and both means."""
    return {
        **result["in_domain"],
        **result["out_of_domain"],
        "in-domain mean": result["in_domain_mean"],
        "out-of-domain mean": result["out_of_domain_mean"],
    }


def comparison_lines(a: dict[str, Any], b: dict[str, Any], na: str, nb: str) -> list[str]:
    rows, va, vb = compare(a, b), values(a), values(b)
    lines = [f"| EER (%) | {na} | {nb} | {nb} - {na} [95% interval] |", "|---|---:|---:|---|"]
    for key, r in rows.items():
        lines.append(f"| {key} | {100 * va[key]:.2f} | {100 * vb[key]:.2f} | "
                     f"{100 * r['diff']:+.2f} [{100 * r['lo']:+.2f}, {100 * r['hi']:+.2f}] |")  # fmt: skip
    return lines


def refusals(result: dict[str, Any]) -> int:
    return sum(entry["refused_files"] for entry in result["lists"].values())


def page(names: list[str], base: str) -> str:
    """docs/generalisation.md: every named result side by side, then each against ``base`` trial for trial."""
    results = {n: load_result(n) for n in names}
    head = "| EER (%) | " + " | ".join(names) + " |"
    lines = [
        "# Generalisation benchmark",
        "",
        "Generated by `recipes/generalise/score.py --page` from `benchmarks/results/generalise/`; do not edit by "
        "hand. How well a model holds up on speakers and conditions its training corpora do not have, measured on "
        "DEV data only, so that model choices can be made on it (the model card reports the test side).",
        "",
        "- In domain: the four official dev lists of the training corpora.",
        "- Out of domain: `arabic_speech_commands.dev` (a language, speakers and recording setups no training corpus "
        "has) and the dev lists with their test side stressed by `recipes/generalise/stress.py` (at most 1,000 "
        "trials a list): "
        + ", ".join(f"`{c}`" for c in CONDITIONS)
        + ". A condition's EER is its mean over the four lists; the out-of-domain mean weights the eight "
        "components equally.",
        "- Intervals: 95% paired bootstrap over enrolment speakers, on the trials both models scored.",
        "",
        head,
        "|---|" + "---:|" * len(names),
    ]
    for key in values(results[names[0]]):
        lines.append(f"| {key} | " + " | ".join(f"{100 * values(r)[key]:.2f}" for r in results.values()) + " |")
    lines.append("| files refused (all lists) | " + " | ".join(str(refusals(r)) for r in results.values()) + " |")
    for name in names:
        if name != base:
            lines += ["", f"## {name} against {base}", "", *comparison_lines(results[base], results[name], base, name)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="bundled, bundled-float32, or a checkpoint / export path")
    parser.add_argument("--name", help="result name (one model; default: the file's stem)")
    parser.add_argument("--compare", nargs=2, metavar=("BASE", "NEW"), help="compare two scored results")
    parser.add_argument("--page", nargs="+", metavar="NAME", help="write docs/generalisation.md for these results")
    parser.add_argument("--base", default="v6", help="what --page compares the others with (default v6)")
    parser.add_argument("--stress", default="cache/stress", help="stress.py's output folder")
    parser.add_argument("--split", choices=sorted(LISTS), default="dev",
                        help="dev (model choices; the default) or test (the model card's figures)")  # fmt: skip
    args = parser.parse_args()
    if args.compare:
        base, new = args.compare
        print("\n".join(comparison_lines(load_result(base), load_result(new), base, new)))
        return 0
    if args.page:
        out = REPO / "docs" / "generalisation.md"
        out.write_text(page(args.page, args.base))
        print(f"wrote {out}")
        return 0
    if not args.models or (args.name and len(args.models) > 1):
        parser.error("give one or more models (and --name with one model only), or --compare BASE NEW")
    root = data_root()
    for spec in args.models:
        name = args.name or Path(spec).stem
        record = score_model(spec, root, Path(args.stress).resolve(), args.split)
        RESULTS.mkdir(parents=True, exist_ok=True)
        packed = gzip.compress((json.dumps(record) + "\n").encode(), mtime=0)  # every trial's score: ~6 MB as text
        atomic_write(RESULTS / f"{name}.json.gz", lambda f, b=packed: f.write(b), "wb")
        print(f"{name}: in-domain {args.split} mean {100 * record['in_domain_mean']:.2f}%, "
              f"out-of-domain mean {100 * record['out_of_domain_mean']:.2f}%")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

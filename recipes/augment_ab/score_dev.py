"""Score the official DEV trial lists with one A/B run's final (model.pt) and best (best.pt) encoders.

    python recipes/augment_ab/score_dev.py exp/augment_ab/aug [--caches cache/ti cache/kw]

Features come from the prepared caches (original recordings only, never augmented copies), so no audio is
decoded. Writes ``<run>/dev_trials.npz`` (per-trial scores and labels, for paired bootstrap in report.py) and
``<run>/dev_trials.json`` (EER per list and model, trials scored / dropped).

The lists are the official ones in ``$GE2E_DATA/trials``: their speakers are the dev split, never trained on.
Note: best.pt was *selected* on the dev speakers (lowest periodic validation EER), so its dev EER is optimistic;
model.pt (the last step) is the unbiased comparison.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from ge2e.data.cache import FeatureCache
from ge2e.inference import embed_mels
from ge2e.metrics import eer
from ge2e.model import SpeakerEncoder
from ge2e.scoring import cosine_scores, read_trials

DEV_LISTS = ("DSPSpeech-20.dev", "speech_commands_v0.02_test.dev")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder holding model.pt and best.pt")
    p.add_argument("--caches", nargs="+", default=["cache/ti", "cache/kw"], help="caches holding the dev files")
    p.add_argument("--data", default=os.environ.get("GE2E_DATA", "../shared/data"), help="shared data folder")
    args = p.parse_args()
    torch.set_num_threads(1)

    run = Path(args.run)
    where: dict[str, tuple[FeatureCache, int]] = {}
    for folder in args.caches:
        cache = FeatureCache(folder)
        for i, u in enumerate(cache.utterances):
            if not u.augment:
                where[os.path.realpath(u.path)] = (cache, i)

    arrays: dict[str, np.ndarray] = {}
    summary: dict[str, dict] = {}
    for tag in ("final", "best"):
        ckpt = run / ("model.pt" if tag == "final" else "best.pt")
        encoder = SpeakerEncoder.load(ckpt).eval()
        summary[tag] = {"checkpoint": str(ckpt), "step": int(encoder.meta.get("step", -1)), "lists": {}}
        for name in DEV_LISTS:
            trials = read_trials(Path(args.data) / "trials" / f"{name}.txt", args.data)
            kept = [t for t in trials if os.path.realpath(t.enroll) in where and os.path.realpath(t.test) in where]
            files = sorted({os.path.realpath(p) for t in kept for p in (t.enroll, t.test)})
            mels = [torch.from_numpy(where[f][0].features(where[f][1])) for f in files]
            emb = embed_mels(encoder, mels, encoder.inference).numpy()
            row = {f: k for k, f in enumerate(files)}
            scores = cosine_scores(
                emb[[row[os.path.realpath(t.enroll)] for t in kept]], emb[[row[os.path.realpath(t.test)] for t in kept]]
            )
            labels = np.asarray([t.label for t in kept])
            arrays[f"{tag}/{name}/scores"], arrays[f"{tag}/{name}/labels"] = scores, labels
            summary[tag]["lists"][name] = {
                "eer": eer(scores, labels)[0],
                "trials": len(kept),
                "dropped": len(trials) - len(kept),  # a file the front end rejected (no speech), so not cached
                "targets": int(labels.sum()),
            }
            print(f"{run.name} {tag} {name}: EER {summary[tag]['lists'][name]['eer']:.4f} ({len(kept)} trials)")
    np.savez(run / "dev_trials.npz", **arrays)
    (run / "dev_trials.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

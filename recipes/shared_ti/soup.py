"""A model soup (Wortsman et al., ICML 2022): the uniform average of the encoder weights of runs that forked from one
training state (the arms of run.sh stage 4), written as a model checkpoint. Runs fine-tuned from a shared state stay
in one basin of the loss, so their average is a model of its own, often better than each of them; whether it is, the
official dev lists decide (calibrate.py / augment_ab.py), never the test lists.

    python recipes/shared_ti/soup.py exp/aug_control exp/aug_telephone exp/aug_specaug --out exp/soup.pt
    python recipes/shared_ti/soup.py exp/shared_ti_v4 exp/g2_{telephone,specaug} --fork-step 0 --checkpoint best \
        --out exp/soup5.pt
    python recipes/shared_ti/soup.py exp/g4_noise --fork-step 0 --checkpoint best \
        --model src/ge2e/pretrained/ge2e_small.pt --out exp/soup6.pt

Each run gives its ``last.pt`` or, with ``--checkpoint best``, its ``best.pt`` (the step of its best periodic dev
validation). Runs warm-started from one checkpoint (``init:``; run.sh stage 5) fork at step 0: their steps count from
there. The checkpoint's config and step are the first run's; ``soup`` in its metadata lists every ingredient with
the compute it added after the fork, so the model card counts all of it; ``lineage`` holds the total (a warm
start's included), for runs warm-started from the soup. ``--model`` adds a model checkpoint as one more ingredient,
such as the bundled model the runs were warm-started from: it trained nothing after the fork.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from cut_last import encoder_from_last
from model_card import DEFAULT_RESULTS, read_json
from training_facts import compute, lineage, training_facts, wall_time

from ge2e.model import SpeakerEncoder


def average(models: list[SpeakerEncoder]) -> dict[str, torch.Tensor]:
    """The uniform average of the models' weights (the same architecture, checked)."""
    states = [m.state_dict() for m in models]
    if any(s.keys() != states[0].keys() or any(s[k].shape != states[0][k].shape for k in s) for s in states):
        raise SystemExit("soup: the runs have different architectures; only forks of one run can be averaged")
    return {k: torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype) for k in states[0]}


def data_facts(data: dict[str, Any]) -> dict[str, Any]:
    """The caches a run read and whether it used SpecAugment, from its config's data section."""
    return {
        "caches": sorted({s["cache"] for s in data.get("sources", [])}),
        "spec_augment": bool(data.get("freq_mask") or data.get("time_mask")),
    }


def ingredient(run: Path, model: SpeakerEncoder, fork_step: int) -> dict[str, Any]:
    """One run of the soup: its data and the steps, crops and CPU-hours it trained after the fork."""
    step, data = model.meta["step"], model.meta["config"]["data"]
    if step <= fork_step:
        # a warm start (init=) counts its steps from 0: it is no fork of the run, and its compute would go negative
        raise SystemExit(f"soup: {run} is at step {step}, not after the fork at step {fork_step} (see --fork-step)")
    seconds = [wall_time(run / "metrics.csv", upto).get("train_seconds", 0) for upto in (fork_step, step)]
    return {
        "run": str(run),
        **data_facts(data),
        "steps": step - fork_step,
        "utterances": (step - fork_step) * data["speakers_per_batch"] * data["utterances_per_speaker"],
        "hours": round((seconds[1] - seconds[0]) / 3600, 4),
    }


def checkpoint_ingredient(path: Path, model: SpeakerEncoder) -> dict[str, Any]:
    """A model checkpoint of the soup (``--model``): the starting point of the runs, no compute after the fork."""
    data = (model.meta.get("config") or {}).get("data") or {}
    return {
        "run": str(path),
        **data_facts(data),
        "steps": 0,
        "utterances": 0,
        "hours": 0.0,
    }


def encoder_of(run: Path, checkpoint: str) -> SpeakerEncoder:
    """The run's encoder at its ``last.pt`` or its ``best.pt``, with ``meta`` holding the step and run config."""
    if checkpoint == "last":
        return encoder_from_last(run)
    return SpeakerEncoder.load(run / "best.pt").eval()  # train.py saves its config and step in the meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (out_dir) forked from one state; first: config")
    parser.add_argument("--out", type=Path, required=True, help="model checkpoint to write")
    parser.add_argument("--fork-step", type=int, default=8050, help="the step every run forked at (0: warm starts)")
    parser.add_argument("--checkpoint", choices=("last", "best"), default="last", help="each run's checkpoint")
    parser.add_argument(
        "--model", type=Path, action="append", default=[], help="a model checkpoint averaged in too (repeatable)"
    )
    args = parser.parse_args(argv)
    models = [encoder_of(run, args.checkpoint) for run in args.runs]
    first = models[0]
    ingredients = [ingredient(run, m, args.fork_step) for run, m in zip(args.runs, models, strict=True)]
    for path in args.model:
        models.append(SpeakerEncoder.load(path).eval())
        ingredients.append(checkpoint_ingredient(path, models[-1]))
    soup = SpeakerEncoder(first.config, first.audio, first.inference)
    soup.load_state_dict(average(models))
    # the first run's own steps are its training; the others add their steps after the fork
    extra = {k: sum(i[k] for i in ingredients[1:]) for k in ("steps", "utterances", "hours")}
    soup_meta = {"runs": ingredients, "extra": extra}
    # lineage: all the compute behind these weights, for a run warm-started from them (model_card.lineage)
    facts = training_facts(first, args.runs[0])
    facts["lineage"] = lineage(facts, read_json(DEFAULT_RESULTS))  # what a warm start began: the bundled model's
    total = compute({**facts, "soup": soup_meta})
    soup.save(args.out, step=first.meta["step"], config=first.meta["config"], soup=soup_meta, lineage=total)
    print(f"{args.out}: the average of {len(models)} runs at step {first.meta['step']}; extra compute {extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

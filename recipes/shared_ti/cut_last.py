"""Cut a model checkpoint out of a run's ``last.pt``: its encoder weights, configs and step, plus the compute
behind them (``lineage``: steps, utterance crops, CPU-hours, the run's own warm-start lineage included), so that a
run started from it (``init:``) can report its full training compute in the model card.

    python recipes/shared_ti/cut_last.py exp/shared_ti_small_v2 exp/v2_step2100_init.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from model_card import DEFAULT_BASELINE, read_json
from training_facts import compute, lineage, training_facts

from ge2e.config import load_config
from ge2e.model import SpeakerEncoder
from ge2e.train import build_encoder


def encoder_from_last(run: Path) -> SpeakerEncoder:
    """The encoder of a run's ``last.pt`` (eval mode), with ``meta`` holding its step and the run's config."""
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)  # our own training state
    encoder = build_encoder(load_config(run / "config.yaml"))  # the run's config, as train wrote it
    prefix = "encoder."
    encoder.load_state_dict({k[len(prefix) :]: v for k, v in state["objective"].items() if k.startswith(prefix)})
    encoder.meta = {"step": state["step"], "config": state["config"]}
    return encoder.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run folder (out_dir) holding last.pt and metrics.csv")
    parser.add_argument("out", type=Path, help="model checkpoint to write")
    parser.add_argument("--baseline", default=str(DEFAULT_BASELINE), help="record of the model the run started from")
    args = parser.parse_args(argv)
    encoder = encoder_from_last(args.run)
    step, cfg = encoder.meta["step"], encoder.meta["config"]
    facts = training_facts(encoder, args.run)
    facts["lineage"] = lineage(facts, read_json(Path(args.baseline)))
    total = compute(facts)
    encoder.save(args.out, step=step, config=cfg, lineage=total, source=str(args.run / "last.pt"))
    print(f"{args.out}: step {step}; lineage {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

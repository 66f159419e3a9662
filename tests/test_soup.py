"""The model soup of recipes/shared_ti/soup.py: a uniform weight average, only of forks of one architecture."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ge2e.config import ModelConfig
from ge2e.model import SpeakerEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "shared_ti"))
from soup import average, ingredient  # a recipe script, not a package module

SMALL = ModelConfig(hidden_size=8, proj_size=0, num_layers=2)


def test_soup_is_the_uniform_average_of_the_weights() -> None:
    torch.manual_seed(0)
    models = [SpeakerEncoder(SMALL) for _ in range(3)]
    soup = average(models)
    for name, value in soup.items():
        expected = sum(m.state_dict()[name] for m in models) / 3
        torch.testing.assert_close(value, expected)
    mixed = SpeakerEncoder(SMALL)
    mixed.load_state_dict(soup)  # a loadable state of the same architecture
    assert not torch.equal(mixed.state_dict()["lstm.weight_ih_l0"], models[0].state_dict()["lstm.weight_ih_l0"])


def test_soup_refuses_runs_of_another_architecture() -> None:
    wider = ModelConfig(hidden_size=16, proj_size=0, num_layers=2)
    with pytest.raises(SystemExit, match="different architectures"):
        average([SpeakerEncoder(SMALL), SpeakerEncoder(wider)])


def test_the_model_card_counts_the_compute_of_every_run_in_the_soup() -> None:
    from model_card import compute

    own = {"step": 100, "utterances_per_step": 160, "train_seconds": 7200}
    assert compute(own) == {"steps": 100, "utterances": 16000, "hours": 2.0}
    soup = {**own, "soup": {"extra": {"steps": 50, "utterances": 8000, "hours": 0.5}}}
    assert compute(soup) == {"steps": 150, "utterances": 24000, "hours": 2.5}


def test_a_run_not_past_the_fork_is_refused_by_name(tmp_path: Path) -> None:
    model = SpeakerEncoder(SMALL)
    model.meta = {"step": 1200, "config": {"data": {"sources": []}}}
    with pytest.raises(SystemExit, match=r"warm is at step 1200, not after the fork at step 8050"):
        ingredient(tmp_path / "warm", model, 8050)

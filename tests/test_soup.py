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
    from training_facts import compute

    own = {"step": 100, "utterances_per_step": 160, "train_seconds": 7200}
    assert compute(own) == {"steps": 100, "utterances": 16000, "hours": 2.0}
    soup = {**own, "soup": {"extra": {"steps": 50, "utterances": 8000, "hours": 0.5}}}
    assert compute(soup) == {"steps": 150, "utterances": 24000, "hours": 2.5}


def test_a_run_not_past_the_fork_is_refused_by_name(tmp_path: Path) -> None:
    model = SpeakerEncoder(SMALL)
    model.meta = {"step": 1200, "config": {"data": {"sources": []}}}
    with pytest.raises(SystemExit, match=r"warm is at step 1200, not after the fork at step 8050"):
        ingredient(tmp_path / "warm", model, 8050)


def test_a_soup_of_warm_starts_best_checkpoints_counts_the_compute_they_began_from(tmp_path: Path) -> None:
    from soup import main

    torch.manual_seed(0)
    init = tmp_path / "init.pt"
    SpeakerEncoder(SMALL).save(init, lineage={"steps": 1000, "utterances": 50_000, "hours": 1.0})
    runs, models = [], []
    for name, best in (("a", 20), ("b", 30)):
        run = tmp_path / name
        run.mkdir()
        data = {"sources": [{"cache": f"cache/{name}"}], "speakers_per_batch": 2, "utterances_per_speaker": 5}
        config = {"init": str(init), "out_dir": str(run), "data": data}
        model = SpeakerEncoder(SMALL)
        model.save(run / "best.pt", step=best, config=config)
        # one second a step, logged for 40 steps: the best checkpoint counts only the steps up to its own
        (run / "metrics.csv").write_text("step,time\n" + "".join(f"{s},{float(s)}\n" for s in range(1, 41)))
        runs.append(run)
        models.append(model)
    assert main([*map(str, runs), "--fork-step", "0", "--checkpoint", "best", "--out", str(tmp_path / "soup.pt")]) == 0
    soup = SpeakerEncoder.load(tmp_path / "soup.pt")
    expected = (models[0].state_dict()["lstm.weight_ih_l0"] + models[1].state_dict()["lstm.weight_ih_l0"]) / 2
    torch.testing.assert_close(soup.state_dict()["lstm.weight_ih_l0"], expected)
    assert [r["steps"] for r in soup.meta["soup"]["runs"]] == [20, 30]
    # the warm start's 1000 steps, the first run's 20 and the second's 30 after the fork
    assert soup.meta["lineage"]["steps"] == 1050
    assert soup.meta["lineage"]["utterances"] == 50_000 + 50 * 10
    assert soup.meta["lineage"]["hours"] == pytest.approx(1.0 + (19 + 29) / 3600, abs=1e-4)  # rounded per run

"""The bundled model's recipe (recipes/shared_ti/run.sh): the stages its header lists are the stages it runs, the
model card's Reproduce section is that list, and every round's overlay loads over the base config."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes" / "shared_ti"))

from model_card import generalisation_section, recipe_stages  # noqa: E402

from ge2e.config import load_config  # noqa: E402

SCRIPT = REPO / "recipes" / "shared_ti" / "run.sh"


def test_listed_stages_are_the_stages_the_script_runs() -> None:
    listed = [int(m.group(1)) for line in recipe_stages() if (m := re.match(r"(\d+) \w+ ", line))]
    run = [int(n) for n in re.findall(r"^if run (\d+); then$", SCRIPT.read_text(), re.MULTILINE)]
    assert listed == run == list(range(1, len(run) + 1)) and len(run) >= 7
    subprocess.run(["bash", "-n", SCRIPT], check=True)


def test_the_model_card_reproduces_with_the_listed_stages() -> None:
    card = (REPO / "docs" / "model.md").read_text()
    block = card[card.index("## Reproduce") :]
    assert "\n".join(recipe_stages()) in block


OVERLAYS = sorted(
    p for p in (REPO / "recipes/shared_ti/conf").glob("*.yaml") if p.name not in ("small.yaml", "paper.yaml")
)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.stem for p in OVERLAYS])
def test_every_overlay_loads_over_the_base(overlay: Path) -> None:
    base = load_config(REPO / "recipes/shared_ti/conf/small.yaml")
    cfg = load_config(REPO / "recipes/shared_ti/conf/small.yaml", overlays=[overlay])
    assert cfg != base and cfg.preset == base.preset and cfg.loss == base.loss
    assert overlay.stem in SCRIPT.read_text()  # each overlay is used by a stage


def _benchmark_result(eer: float, refused: int) -> dict:
    lists = {"a.test": {"refused_files": refused}, "ood.test": {"refused_files": 0}, "a.test.gsm": {"refused_files": 5}}
    return {
        "lists": lists,
        "in_domain": {"a.test": eer},
        "in_domain_mean": eer,
        "out_of_domain": {"ood.test": 2 * eer, "gsm": 3 * eer},
        "out_of_domain_mean": 2.5 * eer,
    }


def test_the_model_card_tabulates_the_test_side_generalisation_benchmark() -> None:
    text = "\n".join(
        generalisation_section({"v7.test": _benchmark_result(0.1, 2), "v6.test": _benchmark_result(0.2, 0)})
    )
    assert "| | v7 | v6 |" in text
    assert "| a.test | 10.00 | 20.00 |" in text and "| **out-of-domain mean** | **25.00** | **50.00** |" in text
    assert "| a.test | 2 | 0 |" in text and "| ood.test | 0 | 0 |" in text  # refused files of the clean lists
    assert "a.test.gsm" not in text  # stressed lists count in their condition's mean, not row by row
    assert "Not measured yet" in "\n".join(generalisation_section({}))

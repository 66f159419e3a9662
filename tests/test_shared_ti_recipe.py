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

from model_card import recipe_stages  # noqa: E402

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

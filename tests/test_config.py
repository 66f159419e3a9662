"""YAML configs: typed sections, unknown keys and YAML's bare booleans are errors, overrides."""

import pytest

from ge2e.config import TrainConfig, apply_overrides, load_config
from ge2e.errors import ConfigError

REPO_CONFIGS = [
    "recipes/shared_ti/conf/small.yaml",
    "recipes/shared_ti/conf/paper.yaml",
    "recipes/voxceleb/conf/paper.yaml",
]


def test_load_nested_sections(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "steps: 5\ndata:\n  speakers_per_batch: 8\n  sources:\n    - {cache: c, splits: [A.train], label: 'no'}\n"
        "model: {hidden_size: 64, proj_size: 0, num_layers: 1}\nval: {every: 7}\n"
    )
    cfg = load_config(path)
    assert isinstance(cfg, TrainConfig) and cfg.steps == 5
    assert cfg.data.speakers_per_batch == 8 and cfg.data.utterances_per_speaker == 10
    assert cfg.data.sources[0].label == "no" and cfg.data.sources[0].splits == ["A.train"]
    assert cfg.model.hidden_size == 64 and cfg.val.every == 7
    assert cfg.loss.init_w == 10.0 and cfg.loss.init_b == -5.0 and cfg.optim.grad_clip == 3.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stepz: 3\n", "unknown key"),
        ("data: {sources: [{cache: c, label: no}]}\n", "quote it"),
        ("data: [1, 2]\n", "expected a mapping"),
        ("steps: [\n", "invalid YAML"),
    ],
)
def test_bad_configs(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")


def test_overrides():
    cfg = apply_overrides(TrainConfig(), ["steps=7", "data.num_workers=0", "optim.lr=0.5"])
    assert (cfg.steps, cfg.data.num_workers, cfg.optim.lr) == (7, 0, 0.5)
    for bad in ["steps", "nope=1", "data.nope=2", "steps.x=1"]:
        with pytest.raises(ConfigError):
            apply_overrides(TrainConfig(), [bad])


@pytest.mark.parametrize("path", [*REPO_CONFIGS, "recipes/shared_td/conf/multireader.yaml"])
def test_recipe_configs_load(path):
    cfg = load_config(path)
    assert cfg.data.sources

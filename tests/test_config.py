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
        ("steps: ten\n", r"bad\.yaml\.steps: expected an integer, got 'ten'"),
        ("steps: true\n", "steps: expected an integer"),
        ("optim: {name: adamm}\n", r"optim\.name: expected one of 'sgd', 'adam', got 'adamm'"),
        ("optim: {lr: fast}\n", r"optim\.lr: expected a finite number, got 'fast'"),
        ("optim: {lr: .nan}\n", "optim.lr: expected a finite number"),
        ("amp: 1\n", "amp: expected true or false"),
        ("out_dir: 5\n", "out_dir: expected a file or folder path"),
        ("data: {sources: [{cache: [a]}]}\n", r"data\.sources\[0\]\.cache: expected a file or folder path"),
        ("data: {sources: {cache: c}}\n", "data.sources: expected a list"),
        ("data: {short: Pad}\n", "data.short: expected one of 'concat', 'pad'"),
        ("model: {hidden_size: 1.5}\n", "model.hidden_size: expected an integer"),
    ],
)
def test_bad_configs(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_numbers_yaml_reads_as_strings_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 1e-3}\nmodel: null\n")
    cfg = load_config(path)
    assert cfg.optim.lr == 0.001 and isinstance(cfg.optim.lr, float) and cfg.model is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.name=adamm", r"^optim\.name: expected one of 'sgd', 'adam', got 'adamm'$"),
        ("steps=ten", r"^steps: expected an integer, got 'ten'$"),
        ("loss.method=ge2e", r"^loss\.method: expected one of"),
        ("data.min_frames=1.5", r"^data\.min_frames: expected an integer"),
        ("init=[x]", r"^init: expected a file or folder path"),
    ],
)
def test_bad_overrides_are_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message) as caught:
        apply_overrides(TrainConfig(), [override])
    assert len(str(caught.value).splitlines()) == 1


def test_bad_set_is_rejected_by_train_before_any_work(tmp_path, capsys):
    from ge2e.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(f"out_dir: {tmp_path / 'run'}\n")
    for override, key in [("optim.name=adamm", "optim.name"), ("steps=ten", "steps")]:
        assert main(["train", str(config), "--set", override]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"ge2e train: error: {key}: expected") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_missing_config(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")


def test_overrides():
    cfg = apply_overrides(TrainConfig(), ["steps=7", "data.num_workers=0", "optim.lr=0.5", "optim.name=adam"])
    assert (cfg.steps, cfg.data.num_workers, cfg.optim.lr, cfg.optim.name) == (7, 0, 0.5, "adam")
    for bad in ["steps", "nope=1", "data.nope=2", "steps.x=1"]:
        with pytest.raises(ConfigError):
            apply_overrides(TrainConfig(), [bad])


@pytest.mark.parametrize("path", [*REPO_CONFIGS, "recipes/shared_td/conf/multireader.yaml"])
def test_recipe_configs_load(path):
    cfg = load_config(path)
    assert cfg.data.sources


def test_overlays_merge_sections_key_by_key_in_order(tmp_path):
    base, first, second = (tmp_path / f"{n}.yaml" for n in ("base", "first", "second"))
    base.write_text("steps: 5\noptim: {name: adam, lr: 0.001}\ndata: {sources: [{cache: a}], speakers_per_batch: 8}\n")
    first.write_text("optim: {lr: 0.00025}\ndata: {sources: [{cache: b}]}\n")
    second.write_text("steps: 7\n")
    cfg = load_config(base, overlays=[first, second])
    assert cfg.steps == 7 and cfg.optim.name == "adam" and cfg.optim.lr == 0.00025
    assert [s.cache for s in cfg.data.sources] == ["b"] and cfg.data.speakers_per_batch == 8
    (tmp_path / "bad.yaml").write_text("optim: {lr: fast}\n")
    with pytest.raises(ConfigError, match=r"base.yaml \+ .*bad.yaml.optim.lr: expected a finite number"):
        load_config(base, overlays=[tmp_path / "bad.yaml"])
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping"):
        load_config(base, overlays=[tmp_path / "list.yaml"])

"""The paper-comparison recipe (recipes/compare) and the generalisation benchmark's stressed copies
(recipes/generalise): their configs load, runs are named and ordered as documented, verdicts follow the intervals,
the keyword test pairs are labelled right, and the stress conditions do what they say, reproducibly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes" / "compare"))
sys.path.insert(0, str(REPO / "recipes" / "generalise"))

import report  # noqa: E402
import run  # noqa: E402
import stress  # noqa: E402

from ge2e.config import apply_overrides, load_config  # noqa: E402
from ge2e.data.augment import rng_for  # noqa: E402
from ge2e.loss import GE2ELoss, TE2ELoss, build_loss  # noqa: E402


@pytest.mark.parametrize("arm", sorted(run.ARMS))
def test_every_arm_builds_its_config_and_loss(arm: str) -> None:
    config, overrides, _ = run.ARMS[arm]
    cfg = apply_overrides(load_config(REPO / "recipes" / "compare" / "conf" / config), [*overrides, "seed=2"])
    assert cfg.seed == 2 and cfg.cpu_budget_s > 0 and cfg.data.num_workers == 0
    loss = build_loss(cfg.loss)
    if arm == "te2e":
        assert isinstance(loss, TE2ELoss)
    else:
        assert isinstance(loss, GE2ELoss)
        assert loss.exclusive == (arm != "softmax_inclusive")
        assert loss.w.requires_grad == (arm != "softmax_fixed_wb")
    if config == "ti.yaml":  # every text-independent arm trains the same encoder on the same data
        base = load_config(REPO / "recipes" / "compare" / "conf" / "ti.yaml")
        assert (cfg.preset, cfg.data, cfg.optim, cfg.cpu_budget_s) == (base.preset, base.data, base.optim, 1800)


def test_runs_are_seed_major_and_named_arm_seed() -> None:
    runs = run.all_runs()
    assert len(runs) == len(run.ARMS) * len(run.SEEDS)
    assert runs[: len(run.ARMS)] == [f"{arm}_s0" for arm in run.ARMS]
    assert run.split_run("softmax_inclusive_s2") == ("softmax_inclusive", 2)
    with pytest.raises(SystemExit, match="unknown run"):
        run.split_run("softmax_x_s0")


@pytest.mark.parametrize(
    ("relative", "size", "word"),
    [
        ([-0.30, -0.25, -0.35], 0.10, "reproduced"),
        ([-0.05, -0.06, -0.04], 0.10, "direction reproduced, smaller"),
        ([-0.30, 0.20, -0.10], 0.10, "inconclusive at this scale (the interval"),
        ([0.20, 0.25, 0.30], 0.0, "not reproduced"),
        ([-0.5], 0.0, "inconclusive at this scale (fewer than 2 seeds"),
    ],
)
def test_verdict_follows_the_interval(relative: list[float], size: float, word: str) -> None:
    assert report.verdict(report.Claim("c", "softmax", "te2e", size), relative).startswith(word)


def test_interval_is_a_student_t_interval() -> None:
    mean, low, high = report.interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == mean - low == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert np.isnan(report.interval([1.0])[1])


def test_keyword_test_pairs_are_every_pair_of_the_test_speakers_files(data_root: Path) -> None:
    trials = run.test_trials(run.KW_TESTS[0], data_root)
    speakers = set((data_root / "splits" / "speech_commands_v0.02_test.test.txt").read_text().split())
    files = {p for t in trials for p in (t.enroll[0], t.test)}
    assert all(Path(p).parent.name == run.TARGET and Path(p).name.split("_")[0] in speakers for p in files)
    assert len(trials) == len(files) * (len(files) - 1) // 2
    for t in trials:
        assert t.label == (Path(t.enroll[0]).name.split("_")[0] == Path(t.test).name.split("_")[0])
    assert 0 < sum(t.label for t in trials) < len(trials)


def speech_like(seconds: float = 2.0, sr: int = 16_000) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    buzz = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 25))
    return (0.2 * buzz * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) / np.abs(buzz).max()).astype(np.float32)


@pytest.mark.parametrize("condition", stress.CONDITIONS)
def test_stress_is_reproducible_and_keeps_the_rate(condition: str) -> None:
    wav = speech_like()
    clips = [speech_like(3.0) * 0.5, speech_like(4.0), speech_like(2.5), speech_like(5.0), speech_like(3.5)]
    a = stress.stress(wav, condition, rng_for(0, "x.flac", condition), clips)
    b = stress.stress(wav, condition, rng_for(0, "x.flac", condition), clips)
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all() and not np.array_equal(a, wav)
    if condition == "short":
        assert stress.SHORT_S[0] * stress.SR <= len(a) <= stress.SHORT_S[1] * stress.SR
    else:
        assert abs(len(a) - len(wav)) <= stress.SR // 50  # codecs may pad or trim a frame


def test_telephone_conditions_remove_the_upper_band() -> None:
    wav = (0.1 * np.random.default_rng(0).standard_normal(stress.SR)).astype(np.float32)
    for condition in ("g711", "gsm", "opus"):
        out = stress.stress(wav, condition, rng_for(0, "n", condition), [])
        spectrum = np.abs(np.fft.rfft(out[: stress.SR])) ** 2
        freqs = np.fft.rfftfreq(stress.SR, 1 / stress.SR)
        assert spectrum[freqs > 4500].sum() < 0.01 * spectrum[(freqs > 300) & (freqs < 3400)].sum(), condition


def test_babble_sits_at_its_snr() -> None:
    wav = speech_like()
    clips = [speech_like(3.0, 16_000) for _ in range(6)]
    rng = rng_for(0, "y", "babble")
    out = stress.stress(wav, "babble", rng, clips)
    snr = 10 * np.log10(np.mean(wav.astype(np.float64) ** 2) / np.mean((out - wav).astype(np.float64) ** 2))
    assert stress.SNR_DB[0] - 0.1 <= snr <= stress.SNR_DB[1] + 0.1


def fake_result(rng: np.random.Generator, shift: float) -> dict:
    """A score.py record over every list of the benchmark: 60 trials each, 6 enrolment speakers."""
    import score

    lists = {}
    names = [*stress.LISTS["dev"], *(n for group in score.components().values() for n in group)]
    for name in names:
        labels = np.tile([1, 0], 30)
        scores = labels * shift + rng.normal(0, 1, 60)
        lists[name] = {
            "trials": [[f"e{i}", f"t{i}"] for i in range(60)],
            "scores": scores.tolist(),
            "labels": labels.tolist(),
            "groups": [f"s{i % 6}" for i in range(60)],
            "eer": score.eer(scores, labels)[0],
            "refused_files": 1,
        }
    return {"lists": lists, **score.summary(lists)}


def test_generalisation_comparison_pairs_trials_and_brackets_the_difference(monkeypatch, tmp_path) -> None:
    import score

    monkeypatch.setattr(score, "RESAMPLES", 200)  # enough to bracket these differences, in a fraction of the time
    rng = np.random.default_rng(0)
    weak, strong = fake_result(rng, 0.5), fake_result(rng, 3.0)
    rows = score.compare(weak, strong)
    assert set(rows) >= {"in-domain mean", "out-of-domain mean", *score.components()}
    for row in rows.values():
        assert row["lo"] <= row["diff"] <= row["hi"]
    assert rows["out-of-domain mean"]["hi"] < 0  # the strong model's EER is lower everywhere
    assert rows["out-of-domain mean"]["diff"] == pytest.approx(
        strong["out_of_domain_mean"] - weak["out_of_domain_mean"]
    )
    # a trial one model could not score is left out of the pair, not misaligned
    del strong["lists"]["wuw2.dev"]["trials"][0]
    for key in ("scores", "labels", "groups"):
        del strong["lists"]["wuw2.dev"][key][0]
    diff, _ = score.paired(weak, strong, "wuw2.dev", seed=0)
    kept = np.asarray(weak["lists"]["wuw2.dev"]["scores"][1:]), np.asarray(weak["lists"]["wuw2.dev"]["labels"][1:])
    expected = score.eer(np.asarray(strong["lists"]["wuw2.dev"]["scores"]), kept[1])[0] - score.eer(*kept)[0]
    assert diff == pytest.approx(expected)
    monkeypatch.setattr(score, "load_result", {"a": weak, "b": strong}.get)
    page = score.page(["a", "b"], base="a")
    refused = len(weak["lists"])  # one refused file a list
    assert "| out-of-domain mean |" in page and "## b against a" in page
    assert f"| files refused (all lists) | {refused} | {refused} |" in page


def test_the_generalisation_benchmark_has_a_test_side(tmp_path: Path) -> None:
    import score

    test = score.components("test")
    assert next(iter(test)) == "arabic_speech_commands.test" and set(test) - {"arabic_speech_commands.test"} == set(
        stress.CONDITIONS
    )
    assert test["gsm"] == [f"{name}.gsm" for name in stress.LISTS["test"]] and len(test["gsm"]) == 5
    assert (
        score.list_path("wuw2.test.gsm", tmp_path, tmp_path / "stress", "test")
        == tmp_path / "stress/test/wuw2.test.gsm.txt"
    )
    assert score.list_path("wuw2.test", tmp_path, tmp_path / "stress", "test") == tmp_path / "trials/wuw2.test.txt"
    names = [*stress.LISTS["test"], *(n for lists in test.values() for n in lists)]
    lists = {n: {"eer": 0.2 if n in stress.LISTS["test"] else 0.1} for n in names}
    result = score.summary(lists, "test")
    assert set(result["in_domain"]) == set(stress.LISTS["test"]) and result["in_domain_mean"] == pytest.approx(0.2)
    assert result["out_of_domain_mean"] == pytest.approx(0.1)
    dev = {"model": "a", "split": "dev"}
    with pytest.raises(SystemExit, match="scored on dev"):
        score.compare(dev, {"model": "b", "split": "test"})

"""Operating points: ``ge2e calibrate`` (criteria, inputs, where the record goes), and what ``verify``,
``identify`` and ``eval`` say about the threshold they show."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ge2e.cli import main
from ge2e.config import AudioConfig, ModelConfig
from ge2e.metrics import error_rates, threshold_at_far
from ge2e.model import SpeakerEncoder
from ge2e.pretrained import bundled_model_path, calibration_path, load_model

SR = 16_000
needs_bundled = pytest.mark.skipif(not bundled_model_path().exists(), reason="bundled model not present")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``data/<speaker>/<utterance>.wav`` (4 speakers x 4 filtered-noise clips of 0.6 s), a trial list over it,
    and ``tiny.pt``, a small untrained model without VAD (its scores are arbitrary but deterministic)."""
    root = tmp_path_factory.mktemp("calibrate")
    rng = np.random.default_rng(1)
    for s in range(4):
        kernel = rng.standard_normal(12)
        for u in range(4):
            path = root / "data" / f"spk{s}" / f"u{u}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            wav = 0.1 * np.convolve(rng.standard_normal(SR * 6 // 10), kernel, "same")
            sf.write(path, wav.astype(np.float32), SR)
    lines = [
        f"{int(a == b)} data/spk{a}/u{i}.wav data/spk{b}/u{j}.wav"
        for a in range(4)
        for b in range(4)
        for i, j in ((0, 1), (2, 3))
    ]
    (root / "dev.txt").write_text("\n".join(lines) + "\n")
    shutil.copytree(root / "data" / "spk0", root / "one" / "spk0")  # one speaker: no impostor trials
    SpeakerEncoder(ModelConfig(hidden_size=16, proj_size=0, num_layers=1), AudioConfig(vad=False)).save(
        root / "tiny.pt"
    )
    return root


@pytest.fixture
def model(corpus: Path, tmp_path: Path) -> Path:
    """A fresh, uncalibrated copy of the tiny model."""
    shutil.copy(corpus / "tiny.pt", tmp_path / "m.pt")
    return tmp_path / "m.pt"


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def eval_scores(capsys, model: Path, out: Path, *source: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Scores, labels and report of ``ge2e eval``: an independent path to the same trials."""
    status, _, err = run(capsys, "eval", "--model", model, *source, "--out", out, "--no-store", "--no-progress")
    assert status == 0, err
    with open(out / "scores.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    scores = np.array([float(r["score"]) for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    return scores, labels, json.loads((out / "report.json").read_text())


# ------------------------------------------------------------------------------------------------- criteria


def test_threshold_at_far_is_the_lowest_within_the_target() -> None:
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    labels = [0, 0, 0, 1, 0, 1, 1, 1]  # non-targets 0.1 0.2 0.3 0.5
    assert threshold_at_far(scores, labels, 0.25) == pytest.approx(0.35)  # accepts 0.5: 1 of 4, and every target
    assert threshold_at_far(scores, labels, 0.2) == pytest.approx(0.55)  # no non-target accepted
    assert error_rates(scores, labels, 0.35) == (0.25, 0.0)
    assert error_rates(scores, labels, 0.55) == (0.0, 0.25)
    with pytest.raises(ValueError, match="false-accept rate"):
        threshold_at_far(scores, labels, 1.0)


def test_eer_calibration_of_a_checkpoint_is_used_by_verify_and_identify(corpus: Path, model: Path, capsys) -> None:
    status, out, err = run(capsys, "calibrate", "--model", model, "--trials", corpus / "dev.txt", "--no-progress")
    assert status == 0, err
    record = json.loads(model.with_suffix(".json").read_text())
    _, _, report = eval_scores(capsys, model, model.parent / "eval", "--trials", corpus / "dev.txt")
    assert record["criterion"] == "eer" and record["data"] == ["dev"]
    assert record["threshold"] == pytest.approx(report["eer_threshold"], abs=1e-6)
    assert f"stored in {model.with_suffix('.json')}" in out

    data = corpus / "data"
    pair = ("--enroll", data / "spk0/u0.wav", "--test", data / "spk1/u0.wav")
    status, out, err = run(capsys, "verify", "--model", model, *pair)
    assert status == (0 if out.startswith("same speaker") else 1)
    origin = err.splitlines()[-1]  # a note on stderr: stdout holds the decision only
    assert origin.startswith(f"threshold {record['threshold']:.3f} is the model's calibration: equal-error-rate point")
    assert "(dev)" in origin
    status, out, err = run(capsys, "identify", "--model", model, "--enroll", data, "--test", data / "spk2/u3.wav")
    assert status == 0 and err.splitlines()[-1] == origin


def test_far_calibration_on_a_folder(corpus: Path, model: Path, capsys) -> None:
    status, out, err = run(
        capsys, "calibrate", "--model", model, "--folder", corpus / "data", "--far", "0.2", "--no-progress"
    )
    assert status == 0, err
    record = json.loads(model.with_suffix(".json").read_text())
    assert record["criterion"] == "far" and record["target_far"] == 0.2
    assert record["data"] == [f"{corpus / 'data'} (4 speakers, 1-utterance enrollment)"]
    # the same trials scored by `ge2e eval --corpus`: at most 20% false accepts, and no lower threshold keeps that
    scores, labels, _ = eval_scores(capsys, model, model.parent / "eval", "--corpus", corpus / "data", "--enroll", "1")
    threshold = record["threshold"]
    fa, miss = error_rates(scores, labels, threshold)
    assert fa <= 0.2 and (fa, miss) == pytest.approx((record["false_accept_rate"], record["miss_rate"]), abs=1e-6)
    assert error_rates(scores, labels, scores[scores < threshold].max())[0] > 0.2
    assert "lowest threshold with at most 20% false accepts" in out


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".ts")])
def test_exported_files_carry_their_calibration(corpus: Path, model: Path, capsys, fmt: str, suffix: str) -> None:
    pytest.importorskip("onnx")
    exported = model.with_suffix(suffix)
    assert run(capsys, "export", "--format", fmt, model, exported)[0] == 0
    status, out, err = run(capsys, "calibrate", "--model", exported, "--trials", corpus / "dev.txt", "--far", "0.3")
    assert status == 0, err
    assert f"stored in {exported}" in out and not exported.with_suffix(".json").exists()
    calibration = load_model(exported).calibration
    assert calibration["criterion"] == "far" and calibration["target_far"] == 0.3
    assert load_model(exported).fingerprint is not None  # still a loadable ge2e export after the rewrite


@pytest.mark.parametrize(
    "args, problem",
    [
        (["--model", "{model}", "--trials", "{root}/missing.txt"], "missing.txt"),
        (["--model", "{model}", "--trials", "{root}/dev.txt", "--far", "1.5"], "must be in (0, 1)"),
        (["--model", "{model}", "--folder", "{root}/one"], "only target trials"),
    ],
)
def test_bad_calibration_input_is_one_line(corpus: Path, model: Path, capsys, args: list[str], problem: str) -> None:
    status, _, err = run(capsys, "calibrate", *(a.format(root=corpus, model=model) for a in args), "--no-progress")
    assert status == 1 and problem in err and len(err.strip().splitlines()) == 1
    assert not model.with_suffix(".json").exists()


def test_dropped_trials_are_named_with_their_reason(corpus: Path, model: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "data").symlink_to(corpus / "data", target_is_directory=True)
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    trials = tmp_path / "dev.txt"
    trials.write_text((corpus / "dev.txt").read_text() + "1 data/spk0/u0.wav bad.wav\n")
    status, out, err = run(capsys, "calibrate", "--model", model, "--trials", trials, "--root", tmp_path, "--json",
                           "--no-progress")  # fmt: skip
    assert status == 0, err
    record = json.loads(out)
    assert record["n_trials"] == 32 and record["stored_in"] == str(model.with_suffix(".json"))
    (dropped,) = record["lists"]["dev"]["dropped_trials"]
    assert dropped["test"].endswith("bad.wav") and "cannot decode" in dropped["problem"]
    assert f"dropped trial of dev: 1 {tmp_path}/data/spk0/u0.wav {tmp_path}/bad.wav" in err  # JSON mode: on stderr


@needs_bundled
def test_calibrate_defaults_to_the_bundled_model(data_root: Path, tmp_path: Path, capsys) -> None:
    root = data_root / "LibriSpeech" / "test-other"
    files = {spk: sorted((root / spk).rglob("*.flac"))[:3] for spk in ("2033", "2414", "3005")}
    rel = {spk: [p.relative_to(root).as_posix() for p in paths] for spk, paths in files.items()}
    lines = [f"{int(a == b)} {rel[a][0]} {rel[b][i]}" for a in rel for b in rel for i in (1, 2)]
    (tmp_path / "trials.txt").write_text("\n".join(lines) + "\n")
    bundled = calibration_path(bundled_model_path()).read_text()
    status, out, err = run(capsys, "calibrate", "--trials", tmp_path / "trials.txt", "--root", root, "--no-progress")
    assert status == 0, err
    assert "(18 trials)" in out and "not stored" in out and "use --threshold" in out
    assert calibration_path(bundled_model_path()).read_text() == bundled  # the installed files are left alone


# ---------------------------------------------------------------------------------------- what is printed


def test_verify_with_a_given_threshold_says_so(corpus: Path, model: Path, capsys) -> None:
    data = corpus / "data"
    status, out, err = run(
        capsys, "verify", "--model", model, "--enroll", data / "spk0/u0.wav", "--test", data / "spk0/u1.wav",
        "--threshold", "0.5",
    )  # fmt: skip
    assert status == (0 if out.startswith("same speaker") else 1)
    assert err.splitlines()[-1] == "threshold 0.500 set by --threshold (the model's calibration is not used)"


def test_eval_labels_its_thresholds(corpus: Path, model: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import ge2e.plots

    drawn: dict[str, float] = {}
    monkeypatch.setattr(ge2e.plots, "plot_score_histogram", lambda scores, labels, lines, path: drawn.update(lines))
    (model.with_suffix(".json")).write_text(json.dumps({"threshold": 0.25, "method": "hand-set"}))
    _, _, report = eval_scores(capsys, model, model.parent / "eval", "--trials", corpus / "dev.txt")
    assert drawn == {
        "EER point of these trials": pytest.approx(report["eer_threshold"]),
        "model's calibrated threshold (verify)": 0.25,
    }
    assert report["calibrated_threshold"] == 0.25


def test_eval_json_is_the_report_and_the_text_names_the_scoring(corpus: Path, model: Path, capsys) -> None:
    args = ["eval", "--model", model, "--trials", corpus / "dev.txt", "--no-store", "--no-progress"]
    status, out, err = run(capsys, *args, "--out", model.parent / "a", "--json")
    assert status == 0, err
    report = json.loads(out)
    assert report == json.loads((model.parent / "a" / "report.json").read_text())
    assert report["n_trials"] == 32 and 0 <= report["eer"] <= 1 and "EER" in err  # the text went to stderr
    status, out, _ = run(capsys, *args, "--out", model.parent / "b")
    assert "on 32 trials (raw cosine scores)" in out and "(none)" not in out

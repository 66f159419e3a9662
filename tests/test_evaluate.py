"""Evaluation: trial lists and corpus enrollment end to end, skipped files, score normalisation, real trials."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ge2e.cli import main
from ge2e.config import AudioConfig, ModelConfig
from ge2e.data.prepare import prepare
from ge2e.data.readers import Utterance, read_corpus
from ge2e.evaluate import (
    EmbeddingStore,
    EvalOptions,
    EvalTrial,
    corpus_trials,
    default_root,
    evaluate,
    list_trials,
    model_fingerprint,
    score_trials,
)
from ge2e.model import SpeakerEncoder

# espeak-ng voices stand in for speakers (synthetic audio: fine for mechanics, never for reported figures).
VOICES = {"spkA": "en-us+m1", "spkB": "en-gb+f2", "spkC": "en-us+m3", "cohX": "en-gb+m4", "cohY": "en-us+f4"}
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things.",
    "A rainbow is a division of white light into many beautiful colors.",
    "She sells sea shells by the sea shore every summer.",
]


NO_VAD = AudioConfig(vad=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, espeak_ng: str) -> Path:
    """``<root>/<speaker>/<n>.wav``: 5 espeak voices x 4 sentences."""
    root = tmp_path_factory.mktemp("voices")
    for speaker, voice in VOICES.items():
        (root / speaker).mkdir()
        for n, text in enumerate(SENTENCES):
            out = root / speaker / f"{n}.wav"
            subprocess.run([espeak_ng, "-v", voice, "-w", str(out), text], check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    # No VAD: the synthetic clips are clean speech, and silero would dominate the run time of these tests.
    SpeakerEncoder(ModelConfig(hidden_size=16, proj_size=0, num_layers=1), NO_VAD).save(path)
    return path


def write_trials(path: Path, rows: list[tuple[int, str, str]]) -> Path:
    path.write_text("".join(f"{label} {a} {b}\n" for label, a, b in rows))
    return path


def eval_cli(*args: str) -> int:
    return main(["eval", "--no-progress", *args])


def test_trial_list_end_to_end(corpus: Path, model_path: Path, tmp_path: Path) -> None:
    rows = [(1, "spkA/0.wav", "spkA/1.wav"), (1, "spkB/0.wav", "spkB/2.wav"), (1, "spkC/1.wav", "spkC/3.wav")]
    rows += [(0, "spkA/0.wav", "spkB/1.wav"), (0, "spkB/0.wav", "spkC/2.wav"), (0, "spkC/1.wav", "spkA/3.wav")]
    trials = write_trials(tmp_path / "mini.test.txt", rows)
    out = tmp_path / "out"
    assert eval_cli("--model", str(model_path), "--trials", str(trials), "--root", str(corpus), "--out", str(out)) == 0

    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "mini.test"
    assert (report["n_trials"], report["n_target"], report["n_nontarget"]) == (6, 3, 3)
    assert 0.0 <= report["eer"] <= 1.0
    assert 0.0 <= report["min_dcf_0.01"] <= 1.0 and 0.0 <= report["min_dcf_0.05"] <= 1.0
    assert report["skipped_trials"] == 0 and report["bad_files"] == {}
    assert report["files_embedded"] == 9  # 12 trial sides, 9 distinct files: each embedded once
    for png in ("det.png", "score_histogram.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "scores.tsv").read_text().splitlines()) == 7

    # A re-run with the same model reuses every stored embedding and gives the same scores.
    assert eval_cli("--model", str(model_path), "--trials", str(trials), "--root", str(corpus), "--out", str(out)) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["embeddings_reused"] == 9
    assert again["eer"] == report["eer"]


def test_bad_files_are_skipped_and_reported(corpus: Path, model_path: Path, tmp_path: Path) -> None:
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF not really a wave file")
    os.symlink(corpus / "spkA", tmp_path / "spkA")
    os.symlink(corpus / "spkB", tmp_path / "spkB")
    rows = [(1, "spkA/0.wav", "spkA/1.wav"), (0, "spkA/0.wav", "spkB/1.wav"), (1, "spkB/0.wav", "spkB/1.wav")]
    rows += [(1, "spkA/0.wav", "gone.wav"), (0, "corrupt.wav", "spkB/0.wav"), (0, "spkB/2.wav", "spkA/2.wav")]
    trials = write_trials(tmp_path / "t.txt", rows)
    out = tmp_path / "out"
    assert eval_cli("--model", str(model_path), "--trials", str(trials), "--out", str(out), "--no-store") == 0

    report = json.loads((out / "report.json").read_text())
    assert report["n_trials"] == 4 and report["skipped_trials"] == 2
    bad = {Path(p).name: problem for p, problem in report["bad_files"].items()}
    assert set(bad) == {"gone.wav", "corrupt.wav"}
    assert "not found" in bad["gone.wav"] or "no such" in bad["gone.wav"].lower()
    assert not (out / "embeddings.npz").exists()


def test_corpus_trials_never_test_on_enrollment() -> None:
    utts = [Utterance(f"/c/{s}/{w}_{i}.wav", s, w, "C") for s in "abcd" for w in ("yes", "no") for i in range(4)]
    utts += [Utterance("/c/e/yes_0.wav", "e", "yes", "C")]  # too few to enroll
    trials, left_out = corpus_trials(utts, enroll=3, seed=1)
    models = {t.enroll for t in trials}
    assert left_out == 1 and len(models) == 4
    assert all(len(m) == 3 for m in models)
    enrolled = {p for m in models for p in m}
    tests = {t.test for t in trials}
    assert not enrolled & tests  # no test utterance is in ANY enrollment set, let alone its own
    assert len(tests) == 4 * 5  # 8 utterances per speaker, 3 enrolled: the 5 others are tests
    assert len(trials) == 4 * 20  # every speaker model against every test utterance
    for t in trials:
        assert t.label == int(Path(t.test).parent == Path(t.enroll[0]).parent)
        assert t.test not in t.enroll
    # The enrollment draw depends on the seed (and only on it).
    assert corpus_trials(utts, enroll=3, seed=1)[0] == trials
    assert {t.enroll for t in corpus_trials(utts, enroll=3, seed=2)[0]} != models


def test_corpus_trials_by_label_stay_within_keyword() -> None:
    utts = [Utterance(f"/c/{s}/{w}_{i}.wav", s, w, "C") for s in "abc" for w in ("yes", "no") for i in range(3)]
    trials, left_out = corpus_trials(utts, enroll=2, seed=0, by_label=True)
    assert left_out == 0 and len({t.enroll for t in trials}) == 6
    for t in trials:
        word = Path(t.test).name.split("_")[0]
        assert all(Path(p).name.startswith(word) for p in t.enroll)
    assert sum(t.label for t in trials) == 6 and len(trials) == 2 * 3 * 3


def test_scores_average_enrollment_and_separate_speakers() -> None:
    store = EmbeddingStore(None, "x")
    rng = np.random.default_rng(0)
    centres = {"a": np.eye(8)[0], "b": np.eye(8)[1]}
    for s, c in centres.items():
        for i in range(3):
            v = c + 0.1 * rng.standard_normal(8)
            store.vectors[f"{s}{i}"] = (v / np.linalg.norm(v)).astype(np.float32)
    trials = [EvalTrial(1, ("a0", "a1"), "a2"), EvalTrial(0, ("a0", "a1"), "b2"), EvalTrial(1, ("b0", "b1"), "b2")]
    trials += [EvalTrial(0, ("b0", "b1"), "a2"), EvalTrial(1, ("a0",), "missing")]
    scored = score_trials(trials, store)
    assert scored.skipped == 1 and len(scored.scores) == 4
    model_a = (store["a0"] + store["a1"]) / np.linalg.norm(store["a0"] + store["a1"])
    assert scored.scores[0] == pytest.approx(float(model_a @ store["a2"]) / np.linalg.norm(store["a2"]), abs=1e-6)
    assert min(scored.scores[scored.labels == 1]) > max(scored.scores[scored.labels == 0])


def test_score_normalisation_runs_and_changes_scores(corpus: Path, model_path: Path, tmp_path: Path) -> None:
    manifest = read_corpus(corpus, layout="generic", corpus="voices")
    cohort = [u for u in manifest if u.speaker.startswith("coh")]
    prepare(cohort, tmp_path / "feats", cfg=NO_VAD, workers=1, progress=False)
    cohort_list = tmp_path / "cohort.txt"
    cohort_list.write_text("voices/cohX\nvoices/cohY\n")
    model = SpeakerEncoder.load(model_path)
    trials, _ = corpus_trials([u for u in manifest if u.speaker.startswith("spk")], enroll=2)
    store = EmbeddingStore(None, model_fingerprint(model))
    raw, _ = evaluate(model, trials, store)
    common = {"cohort_cache": str(tmp_path / "feats"), "cohort_splits": [str(cohort_list)], "cohort_per_speaker": 2}
    snorm, s_scored = evaluate(model, trials, store, EvalOptions(norm="snorm", **common))
    asnorm, a_scored = evaluate(model, trials, store, EvalOptions(norm="asnorm", top_n=50, **common))
    assert snorm["cohort_size"] == 2 and asnorm["top_n"] == 2  # top_n capped at the cohort size
    assert raw["n_trials"] == snorm["n_trials"] == 3 * 6
    np.testing.assert_allclose(a_scored.scores, s_scored.scores)  # top_n == C: AS-norm is S-norm
    assert not np.allclose(s_scored.scores, score_trials(trials, store).scores)

    out = tmp_path / "cli"
    args = ["--model", str(model_path), "--corpus", str(corpus), "--enroll", "2", "--out", str(out)]
    assert eval_cli(*args, "--norm", "snorm", "--cohort-cache", str(tmp_path / "feats"), "--cohort-splits",
                    str(cohort_list)) == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "corpus" and report["norm"] == "snorm" and report["enroll"] == 2
    assert report["n_trials"] == 5 * 10  # 5 speaker models x (5 voices x 2 test sentences)


def test_bad_invocations_fail_with_one_line(model_path: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "none.txt"
    assert eval_cli("--model", str(model_path), "--trials", str(missing), "--out", str(tmp_path / "o")) == 1
    assert eval_cli("--model", str(tmp_path / "no.pt"), "--trials", str(missing), "--out", str(tmp_path / "o")) == 1
    trials = write_trials(tmp_path / "t.txt", [(1, "a.wav", "b.wav"), (0, "a.wav", "c.wav")])
    assert eval_cli("--model", str(model_path), "--trials", str(trials), "--out", str(tmp_path / "o")) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert [line.startswith("ge2e eval: error:") for line in errors] == [True] * 3
    assert "none.txt" in errors[0] and "no.pt" in errors[1] and "no trial left" in errors[2]


def test_official_trial_list_subset(data_root: Path, model_path: Path, tmp_path: Path) -> None:
    official = data_root / "trials" / "DSPSpeech-20.test.txt"  # short clips: a quick test
    assert default_root(official) == data_root.resolve()
    lines = official.read_text().splitlines()
    subset = [line for line in lines if line.startswith("1")][:3] + [line for line in lines if line[0] == "0"][:3]
    trials = tmp_path / "trials" / "DSPSpeech-20.test.txt"  # same layout: default root is <data>
    trials.parent.mkdir()
    trials.write_text("\n".join(subset) + "\n")
    os.symlink(data_root / "DSPSpeech-20", tmp_path / "DSPSpeech-20")
    assert len(list_trials(trials)) == 6
    out = tmp_path / "out"
    assert eval_cli("--model", str(model_path), "--trials", str(trials), "--out", str(out)) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "DSPSpeech-20.test" and report["n_trials"] == 6 and report["skipped_trials"] == 0

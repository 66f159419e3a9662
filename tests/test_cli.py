"""The user commands through ``python -m ge2e``: help, embed, verify, similarity, plot, demo; speaker naming and
output folders across commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ge2e.api import bundled_model_path
from ge2e.cli import main
from ge2e.config import AudioConfig, ModelConfig
from ge2e.model import SpeakerEncoder

SR = 16_000
NO_FOLDER = "no such folder (create it, or pass --mkdir)"
COMMANDS = ("embed", "verify", "similarity", "plot", "demo")


def ge2e(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ge2e ARGS`` in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "ge2e", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def ge2e_here(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run the command in this process (torch already loaded: much faster): ``(exit status, stdout, stderr)``."""
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<speaker>/<utterance>.wav``: 3 speakers x 5 one-second noise clips, plus a tiny model without VAD."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    for s in range(3):
        kernel = rng.standard_normal(16)  # one spectrum per "speaker"
        for u in range(5):
            wav = 0.1 * np.convolve(rng.standard_normal(SR), kernel, mode="same")
            path = root / "data" / f"spk{s}" / f"utt{u}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wav.astype(np.float32), SR)
    SpeakerEncoder(ModelConfig(hidden_size=16, proj_size=0, num_layers=1), AudioConfig(vad=False)).save(
        root / "tiny.pt"
    )
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return root


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command: str) -> None:
    result = ge2e(command, "--help")
    assert result.returncode == 0 and f"usage: ge2e {command}" in result.stdout


def test_serve_usage_shows_the_keys_subcommand_as_optional() -> None:
    usage = ge2e("serve", "--help").stdout.split("\n\n", 1)[0]
    assert usage.splitlines() == [
        "usage: ge2e serve --db FILE [options]",
        "       ge2e serve keys {add,list,revoke} --db FILE ...",
    ]


def test_verify_decides_both_ways(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = corpus / "data", corpus / "tiny.pt"
    args = [
        "verify",
        "--enroll",
        data / "spk0" / "utt0.wav",
        data / "spk0" / "utt1.wav",
        "--test",
        data / "spk1" / "utt0.wav",
    ]
    status, out, err = ge2e_here(capsys, *args, "--model", model, "--threshold", "-1")
    assert status == 0 and out.startswith("same speaker: score")
    assert "set by --threshold" in err and "threshold" not in out.splitlines()[-1].split(":")[0]  # a note, on stderr
    status, out, _ = ge2e_here(capsys, *args, "--model", model, "--threshold", "1.01")
    assert status == 1 and out.startswith("different speaker: score")  # 1: rejected, as grep's "no match"
    status, _, err = ge2e_here(capsys, *args, "--model", model)
    assert status == 2 and "no calibrated threshold" in err  # 2: an error


def test_verify_json_scores_several_test_files(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = corpus / "data", corpus / "tiny.pt"
    tests = [data / "spk0" / "utt2.wav", data / "spk1" / "utt0.wav"]
    status, out, err = ge2e_here(capsys, "verify", "--enroll", data / "spk0" / "utt0.wav", "--test", *tests,
                                 "--model", model, "--threshold", "0.999", "--json", "--quiet")  # fmt: skip
    answer = json.loads(out)  # the whole of stdout is one JSON document
    assert [r["test"] for r in answer["results"]] == [str(t) for t in tests]
    assert all(-1 <= r["score"] <= 1 and r["same_speaker"] is (r["score"] >= 0.999) for r in answer["results"])
    assert answer["threshold"] == 0.999 and "--threshold" in answer["threshold_origin"]
    assert status == (0 if answer["same_speaker"] else 1) and err == ""  # --quiet: no note


def test_identify_json_names_speakers_by_corpus_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """LibriSpeech's <speaker>/<chapter>/<utterance>: speakers are the top folders, not the chapters."""
    rng = np.random.default_rng(1)
    for speaker, chapter in (("2033", "164914"), ("2414", "128291")):
        for n in range(2):
            path = tmp_path / speaker / chapter / f"{speaker}-{chapter}-{n:04d}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.1 * rng.standard_normal(SR).astype(np.float32), SR)
    model = tmp_path / "tiny.pt"
    SpeakerEncoder(ModelConfig(hidden_size=16, proj_size=0, num_layers=1), AudioConfig(vad=False)).save(model)
    test = tmp_path / "2033" / "164914" / "2033-164914-0001.flac"
    status, out, _ = ge2e_here(capsys, "identify", "--enroll", tmp_path, "--test", test, "--model", model,
                               "--threshold", "0.5", "--json", "--no-progress")  # fmt: skip
    answer = json.loads(out)
    assert status == 0 and answer["speakers"] == 2
    assert {m["speaker"] for m in answer["results"][0]["top"]} == {"2033", "2414"}
    status, out, _ = ge2e_here(capsys, "identify", "--enroll", tmp_path, "--test", test, "--model", model,
                               "--threshold", "0.5", "--json", "--no-progress", "--speaker-level", "1")  # fmt: skip
    assert {m["speaker"] for m in json.loads(out)["results"][0]["top"]} == {"164914", "128291"}


def test_a_mistyped_option_gets_the_commands_usage_and_a_suggestion(corpus: Path) -> None:
    result = ge2e("verify", "--enroll", "a.wav", "--test", "b.wav", "--treshold", "0.5")
    assert result.returncode == 2 and "usage: ge2e verify" in result.stderr
    assert "did you mean --threshold?" in result.stderr


def test_verify_on_a_corrupt_file_prints_one_error_line(corpus: Path) -> None:
    enroll = corpus / "data" / "spk0" / "utt0.wav"
    bad = ge2e(
        "verify",
        "--enroll",
        enroll,
        "--test",
        corpus / "corrupt.wav",
        "--model",
        corpus / "tiny.pt",
        "--threshold",
        "0.5",
    )
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1, bad.stderr
    assert lines[0].startswith("ge2e verify: error:") and "corrupt.wav" in lines[0]


def test_short_speech_is_scored_and_flagged(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """0.2 s of audio, under the 250 ms a model's training data needs: verify and identify score it, saying short."""
    data, model = corpus / "data", corpus / "tiny.pt"
    wav, sr = sf.read(data / "spk1" / "utt0.wav", dtype="float32")
    short = tmp_path / "short.wav"
    sf.write(short, wav[: sr // 5], sr)
    common = ["--model", model, "--threshold", "-1"]  # every score accepted: exit status 0
    status, out, err = ge2e_here(capsys, "verify", "--enroll", data / "spk1" / "utt1.wav", "--test", short, *common)
    lines = out.splitlines()
    assert status == 0, err
    assert lines[0].startswith("same speaker: score")
    assert lines[-1].startswith("short utterance: 0.18 s of speech (under 1 s)")
    status, out, err = ge2e_here(capsys, "identify", "--enroll", data, "--test", short, *common, "--no-progress")
    assert status == 0, err
    assert out.splitlines()[1].strip().startswith("short utterance: 0.18 s of speech")
    two_seconds = tmp_path / "long.wav"
    sf.write(two_seconds, np.concatenate([sf.read(data / "spk1" / f"utt{u}.wav")[0] for u in (2, 3)]), sr)
    status, out, _ = ge2e_here(capsys, "verify", "--enroll", data / "spk1" / "utt1.wav", "--test", two_seconds, *common)
    assert status == 0 and "short" not in out


def test_a_spoken_digit_is_scored_and_noise_refused(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the VAD: a Speech Commands "one" with 0.16 s of speech (refused before as under 250 ms) gets a score
    flagged short; noise without speech is still refused, in one line naming the file."""
    model = tmp_path / "vad.pt"
    SpeakerEncoder(ModelConfig(hidden_size=16, proj_size=0, num_layers=1), AudioConfig()).save(model)
    clips = data_root / "speech_commands_v0.02_test"
    enroll = [clips / word / "82d0d3ba_nohash_0.opus" for word in ("no", "right", "up")]
    digit = clips / "one" / "82d0d3ba_nohash_0.opus"
    common = ["--enroll", *enroll, "--model", model, "--threshold", "-1"]
    status, out, err = ge2e_here(capsys, "verify", *common, "--test", digit)
    assert status == 0, err
    assert re.match(r"short utterance: 0\.1\d s of speech", out.splitlines()[-1]), out
    hiss = tmp_path / "hiss.wav"
    sf.write(hiss, (0.01 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32), SR)
    status, out, err = ge2e_here(capsys, "verify", *common, "--test", hiss)
    assert status == 2 and out == ""
    assert err.strip().splitlines() == [
        f"ge2e verify: error: {hiss}: no speech found by VAD (threshold 0.5; steady sound)"
    ]


def test_embed_skips_bad_files_and_writes_npz(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, model = tmp_path / "emb.npz", corpus / "tiny.pt"
    inputs = [corpus / "data" / "spk0", corpus / "corrupt.wav"]
    status, stdout, _ = ge2e_here(capsys, "embed", *inputs, "--out", out, "--model", model, "--no-progress")
    assert status == 0
    assert "skipped 1 file(s)" in stdout and "corrupt.wav" in stdout
    with np.load(out) as npz:
        assert npz["embeddings"].shape == (5, 16) and len(npz["paths"]) == 5
        np.testing.assert_allclose(np.linalg.norm(npz["embeddings"], axis=1), 1.0, atol=1e-5)
    status, _, err = ge2e_here(capsys, "embed", tmp_path / "nowhere", "--out", out, "--model", model)
    assert status == 1 and "no such file or folder" in err


def test_similarity_and_plot_write_pngs(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted((corpus / "data" / "spk0").glob("*.wav"))[:3]
    common = ["--model", corpus / "tiny.pt", "--no-progress"]
    status, out, _ = ge2e_here(
        capsys, "similarity", *files, "--out", tmp_path / "sim.png", "--csv", tmp_path / "sim.csv", *common
    )
    assert status == 0
    assert (tmp_path / "sim.png").stat().st_size > 0 and "1.00" in out
    assert len((tmp_path / "sim.csv").read_text().splitlines()) == 4
    status, out, _ = ge2e_here(capsys, "plot", corpus / "data", "--out", tmp_path / "proj.png", *common)
    assert status == 0
    assert (tmp_path / "proj.png").stat().st_size > 0 and "3 speakers, 15 utterances" in out


def test_demo_on_a_speaker_folder(corpus: Path, tmp_path: Path) -> None:
    result = ge2e("demo", "--data", corpus / "data", "--model", corpus / "tiny.pt", "--out", tmp_path, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "EER:" in result.stdout and "6 test utterances x 3 speakers = 6 target + 12 non-target" in result.stdout
    assert (tmp_path / "similarity.png").exists() and (tmp_path / "projection.png").exists()


def test_demo_without_data_explains_how_to_point_it(tmp_path: Path) -> None:
    result = ge2e("demo", env={"GE2E_DATA": str(tmp_path / "absent")})
    assert result.returncode == 2
    assert "no data folder" in result.stderr and "--data DIR" in result.stderr


def test_float32_is_for_the_bundled_model(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = corpus / "data" / "spk0" / "utt0.wav"
    status, _, err = ge2e_here(capsys, "embed", clip, "--out", corpus / "x.npz", "--model", corpus / "tiny.pt",
                               "--float32")  # fmt: skip
    assert status != 0 and "--float32" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not bundled_model_path().exists(), reason="bundled model ge2e_small.pt not present yet")
@pytest.mark.parametrize("form", [[], ["--float32"]], ids=["default", "float32"])
def test_bundled_verify_on_test_speakers(data_root: Path, form: list[str]) -> None:
    """The README example: LibriSpeech test speakers 2033 and 2414 (held out), 3 enrollment utterances, with the
    bundled model's default form (int8 ONNX where onnxruntime is installed) and its float32 checkpoint."""
    root = data_root / "LibriSpeech" / "test-other"
    first, second = (sorted((root / spk).rglob("*.flac")) for spk in ("2033", "2414"))
    same = ge2e("verify", *form, "--enroll", *first[:3], "--test", first[3])
    different = ge2e("verify", *form, "--enroll", *first[:3], "--test", second[3])
    assert same.stdout.startswith("same speaker"), same.stdout + same.stderr
    assert different.stdout.startswith("different speaker"), different.stdout + different.stderr


def test_embed_follows_linked_speaker_folders_once(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corpus assembled from links to speaker folders is walked; a link back up the tree is walked once."""
    linked = tmp_path / "linked"
    linked.mkdir()
    for speaker in ("spk0", "spk1"):
        (linked / speaker).symlink_to(corpus / "data" / speaker, target_is_directory=True)
    (linked / "spk0" / "loop").symlink_to(linked, target_is_directory=True)  # into the source folder: a cycle
    try:
        status, _, err = ge2e_here(capsys, "embed", linked, "--out", tmp_path / "emb.npz", "--model",
                                     corpus / "tiny.pt", "--no-progress")  # fmt: skip
    finally:
        (linked / "spk0" / "loop").unlink()
    assert status == 0, err
    with np.load(tmp_path / "emb.npz") as npz:
        names = sorted(Path(p).relative_to(linked).as_posix() for p in npz["paths"])
    assert names == [f"{s}/utt{u}.wav" for s in ("spk0", "spk1") for u in range(5)]


def test_a_clip_the_vad_misses_is_scored_with_a_one_line_warning(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clearly spoken keyword silero hears no speech in: scored, and stderr says so in one line."""
    model = tmp_path / "vad.pt"
    SpeakerEncoder(ModelConfig(hidden_size=16, proj_size=0, num_layers=1), AudioConfig()).save(model)
    clips = data_root / "speech_commands_v0.02_test"
    word = clips / "right" / "475b61f1_nohash_0.opus"
    common = ["--enroll", clips / "up" / "b83c1acf_nohash_4.opus", "--model", model, "--threshold", "-1"]
    status, out, err = ge2e_here(capsys, "verify", *common, "--test", word)
    assert status == 0, err
    assert out.startswith("same speaker: score")
    warning = [line for line in err.splitlines() if "low confidence" in line]
    assert warning == [f"ge2e verify: warning: {word}: the VAD found 0 ms of speech; scored the energy-trimmed "
                       "audio (low confidence)"], err  # fmt: skip


def test_verify_decides_the_usable_test_files_and_exits_2_for_the_rest(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt, a missing and a silent test file among good ones: one error line each, the good ones decided,
    exit 2 (and ``skipped`` in the JSON) because not every file was decided."""
    data, model = corpus / "data", corpus / "tiny.pt"
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR, dtype=np.float32), SR)
    bad = [corpus / "corrupt.wav", tmp_path / "absent.wav", silent]
    good = [data / "spk0" / "utt2.wav", data / "spk1" / "utt0.wav"]
    common = ["verify", "--enroll", data / "spk0" / "utt0.wav", "--model", model, "--threshold", "-1"]
    status, out, err = ge2e_here(capsys, *common, "--test", good[0], *bad, good[1])
    assert status == 2
    decided = [line.split(":")[0] for line in out.splitlines() if not line.startswith("short utterance")]
    assert decided == [str(good[0]), str(good[1])]
    errors = [line for line in err.splitlines() if line.startswith("ge2e verify: error: ")]
    assert [line.removeprefix("ge2e verify: error: ").split(":")[0] for line in errors] == [str(b) for b in bad]
    status, out, _ = ge2e_here(capsys, *common, "--test", good[0], *bad, "--json")
    answer = json.loads(out)
    assert status == 2 and answer["same_speaker"] is False  # every score passes -1, but not every file was scored
    assert [r["test"] for r in answer["results"]] == [str(good[0])] and answer["results"][0]["same_speaker"]
    assert sorted(answer["skipped"]) == sorted(map(str, bad))
    status, out, err = ge2e_here(capsys, *common, "--test", *good, "--json", "--quiet")
    assert status == 0 and json.loads(out)["skipped"] == {} and err == ""


@pytest.fixture(scope="module")
def chapters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LibriSpeech's ``<speaker>/<chapter>/<utterance>`` (``corpus/``: 2 speakers x 2 chapters x 2 clips), the
    same clips as ``<speaker>/<utterance>`` one folder down (``wrapped/voices/``), and a tiny model."""
    root = tmp_path_factory.mktemp("chapters")
    rng = np.random.default_rng(2)
    for speaker, chapter_ids in (("2033", ("164914", "164915")), ("2414", ("128291", "128292"))):
        for chapter in chapter_ids:
            for n in range(2):
                wav = 0.1 * rng.standard_normal(SR).astype(np.float32)
                for path in (root / "corpus" / speaker / chapter / f"{speaker}-{chapter}-{n:04d}.flac",
                             root / "wrapped" / "voices" / speaker / f"{chapter}-{n}.flac"):  # fmt: skip
                    path.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(path, wav, SR)
    SpeakerEncoder(ModelConfig(hidden_size=16, proj_size=0, num_layers=1), AudioConfig(vad=False)).save(
        root / "tiny.pt"
    )
    return root


@pytest.mark.parametrize(
    ("folder", "level", "n"),
    [("corpus", [], 2), ("corpus", ["--speaker-level", "1"], 4), ("wrapped", [], 2)],
    ids=["layout", "level-1", "one-folder-down"],
)
def test_every_folder_command_names_speakers_the_same_way(
    chapters: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: str, level: list[str], n: int
) -> None:
    """plot, demo, calibrate --folder and eval --corpus name speakers as identify and similarity do: the layout's
    2 speakers, with --speaker-level 1 the 4 chapter folders, and the 2 speaker folders under a lone folder
    (not that folder as the only speaker)."""
    data = chapters / folder
    common = ["--model", chapters / "tiny.pt", "--no-progress", *level]
    status, out, err = ge2e_here(capsys, "plot", data, "--out", tmp_path / "p.png", *common)
    assert status == 0 and f"{n} speakers, 8 utterances" in out, err
    status, out, err = ge2e_here(capsys, "demo", "--data", data, "--enroll", "1", "--per-speaker", "2",
                                 "--out", tmp_path / "demo", *common)  # fmt: skip
    assert status == 0 and f"x {n} speakers =" in out, err
    status, out, err = ge2e_here(capsys, "calibrate", "--folder", data, "--json", *common)
    assert status == 0 and f"({n} speakers, 1-utterance enrollment)" in json.loads(out)["data"][0], err
    status, out, err = ge2e_here(capsys, "eval", "--corpus", data, "--enroll", "1", "--out", tmp_path / "eval",
                                 "--json", *common)  # fmt: skip
    report = json.loads(out)
    assert status == 0 and report["n_target"] == 8 - n and report["n_trials"] == n * (8 - n), err


@pytest.mark.parametrize("command", ["embed", "similarity", "plot", "diarize", "export", "eval", "demo"])
def test_an_output_in_a_missing_folder_is_refused_unless_mkdir(
    command: str, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped output folder must not silently become a new tree: one line naming it, nothing created."""
    data, model = corpus / "data", corpus / "tiny.pt"
    missing = tmp_path / "typo"
    clip = data / "spk0" / "utt0.wav"
    trials = tmp_path / "trials.txt"
    trials.write_text(f"1 {clip} {data / 'spk0' / 'utt1.wav'}\n0 {clip} {data / 'spk1' / 'utt0.wav'}\n")
    argv = {
        "embed": ["embed", clip, "--out", missing / "x.npz", "--model", model],
        "similarity": ["similarity", clip, clip, "--out", missing / "x.png", "--model", model],
        "plot": ["plot", data, "--out", missing / "x.png", "--model", model],
        "diarize": ["diarize", clip, "--out", missing / "x.rttm", "--model", model],
        "export": ["export", model, missing / "x.onnx"],
        "eval": ["eval", "--trials", trials, "--out", missing / "eval", "--model", model],
        "demo": ["demo", "--data", data, "--out", missing / "demo", "--model", model],
    }[command]
    status, out, err = ge2e_here(capsys, *argv)
    assert status == 1 and err.strip() == f"ge2e {command}: error: {missing}: {NO_FOLDER}"
    assert not missing.exists() and out == ""
    if command in ("eval", "demo"):  # folder outputs: --mkdir creates the missing parent too
        status, _, err = ge2e_here(capsys, *argv, "--mkdir", "--no-progress")
        assert status == 0 and (missing / command).is_dir(), err

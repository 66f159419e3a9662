"""Diarization: RTTM I/O, segment building, clustering, DER scoring, CLI errors, and a real 2-speaker conversation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ge2e.cli import main
from ge2e.diarization import Segment, read_rttm, write_rttm
from ge2e.diarization.clustering import cluster
from ge2e.diarization.evaluate import der
from ge2e.diarization.pipeline import SpeechWindows, diarize_speech, embed_speech, speaker_range, to_segments
from ge2e.errors import Ge2eError, NoSpeechError
from ge2e.model import SpeakerEncoder

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = (REPO / "src/ge2e/pretrained/ge2e_small.pt", REPO / "exp/shared_ti_small/best.pt")


@pytest.fixture(scope="module")
def untrained() -> SpeakerEncoder:
    torch.manual_seed(0)
    return SpeakerEncoder("small").eval()


def trained_checkpoint() -> Path:
    for path in CHECKPOINTS:
        if path.exists():
            return path
    pytest.skip(f"no trained checkpoint yet ({', '.join(str(p.relative_to(REPO)) for p in CHECKPOINTS)})")


def clusters(sizes: list[int], dim: int = 32, spread: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around random centres, in time order as blocks: ((N, dim), (N,) true labels).

    ``spread`` 0.5 puts same-cluster cosines near 0.8, as for d-vectors of one speaker.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(sizes), dim))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[truth] + spread * rng.standard_normal((len(truth), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), truth


# ---- RTTM --------------------------------------------------------------------------------------------------


def test_rttm_round_trip_parses_with_pyannote(tmp_path: Path) -> None:
    from pyannote.database.util import load_rttm

    segments = [Segment(0.5, 2.25, "SPEAKER_00"), Segment(2.5, 4.0, "SPEAKER_01"), Segment(4.0, 4.5, "SPEAKER_00")]
    path = tmp_path / "out.rttm"
    write_rttm({"conv1": segments, "conv2": segments[:1]}, path)
    assert read_rttm(path) == {"conv1": segments, "conv2": segments[:1]}
    annotations = load_rttm(path)
    assert set(annotations) == {"conv1", "conv2"}
    turns = sorted((round(s.start, 3), round(s.end, 3), label) for s, _, label in annotations["conv1"].itertracks(True))
    assert turns == [(s.start, s.end, s.speaker) for s in segments]


def test_read_rttm_names_file_and_line_of_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.rttm"
    path.write_text("SPEAKER a 1 0.0 1.0 <NA> <NA> s1 <NA> <NA>\nSPEAKER a 1 zero 1.0 <NA> <NA> s1 <NA> <NA>\n")
    with pytest.raises(Ge2eError, match=r"bad\.rttm:2: start and duration must be numbers"):
        read_rttm(path)


# ---- segments and clustering -------------------------------------------------------------------------------


def test_to_segments_splits_at_pauses_and_label_changes() -> None:
    # 8 speech frames of 10 ms centred at 5 ms + 10 ms x index: frames 0-3, a gap, then 10-13
    speech = SpeechWindows(
        name="x",
        embeddings=np.zeros((3, 4), np.float32),
        speech_frames=np.array([0, 1, 2, 3, 10, 11, 12, 13]),
        owner=np.array([0, 0, 0, 1, 1, 1, 2, 2]),
        frame_s=0.01,
        offset_s=0.005,
        duration_s=1.0,
    )
    segments = to_segments(speech, np.array([7, 7, 3]))
    assert [s.speaker for s in segments] == ["SPEAKER_00", "SPEAKER_00", "SPEAKER_01"]
    assert [(s.start, s.end) for s in segments] == [(0.0, 0.04), (0.1, 0.12), (0.12, 0.14)]


@pytest.mark.parametrize("method", ["spectral", "kmeans"])
def test_fixed_number_of_speakers_is_respected(method: str) -> None:
    x, _ = clusters([30, 30])
    for k in (1, 2, 3, 4):
        assert len(set(cluster(x, k, k, method).tolist())) == k


@pytest.mark.parametrize("method", ["spectral", "kmeans"])
def test_speaker_count_is_estimated_from_well_separated_clusters(method: str) -> None:
    for sizes in ([25, 25], [20, 15, 25], [15, 20, 15, 20]):
        x, truth = clusters(sizes, seed=len(sizes))
        labels = cluster(x, 1, 8, method, window_overlap=1)
        assert len(set(labels.tolist())) == len(sizes)
        # same partition up to renaming: every true cluster maps to exactly one label
        assert all(len(set(labels[truth == t].tolist())) == 1 for t in range(len(sizes)))


def test_spectral_finds_a_single_speaker() -> None:
    x, _ = clusters([60])
    assert set(cluster(x, 1, 8, "spectral").tolist()) == {0}


def test_speaker_range_rejects_contradictions() -> None:
    assert speaker_range(None, None, None) == (1, 10)
    assert speaker_range(3, None, None) == (3, 3)
    with pytest.raises(Ge2eError, match="not both"):
        speaker_range(2, 1, None)
    with pytest.raises(Ge2eError, match="min speakers <= max speakers"):
        speaker_range(None, 4, 2)


# ---- scoring -----------------------------------------------------------------------------------------------


def test_der_counts_confusion_and_collar_is_per_side() -> None:
    ref = {"a": [Segment(0.0, 10.0, "A"), Segment(10.0, 20.0, "B")]}
    hyp = {"a": [Segment(0.0, 10.5, "x"), Segment(10.5, 20.0, "y")]}
    assert der(ref, hyp).der == pytest.approx(0.5 / 20)
    # +-0.25 s around 0, 10 and 20 is not scored: 19 s left, of which 10.25-10.5 is confused
    assert der(ref, hyp, collar=0.25).der == pytest.approx(0.25 / 19)
    assert der(ref, {}).der == pytest.approx(1.0)  # no hypothesis: all missed


def test_diarize_eval_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_rttm({"a": [Segment(0.0, 10.0, "A"), Segment(10.0, 20.0, "B")]}, tmp_path / "ref" / "a.rttm")
    write_rttm({"a": [Segment(0.0, 20.0, "x")]}, tmp_path / "hyp" / "a.rttm")
    assert main(["diarize-eval", str(tmp_path / "ref"), str(tmp_path / "hyp"), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "50.00%" in out and (tmp_path / "r.json").exists()


# ---- errors ------------------------------------------------------------------------------------------------


def test_silent_audio_is_a_clear_error(untrained: SpeakerEncoder) -> None:
    with pytest.raises(NoSpeechError, match=r"<array>: silent audio"):
        embed_speech(untrained, np.zeros(32_000, np.float32), 16_000)


def test_cli_reports_bad_and_silent_audio_in_one_line(
    tmp_path: Path, untrained: SpeakerEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    import soundfile as sf

    model = tmp_path / "m.pt"
    untrained.save(model)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16_000, np.float32), 16_000)
    for audio, problem in ((bad, "cannot decode audio"), (silent, "silent audio")):
        code = main(["diarize", str(audio), "--out", str(tmp_path / "o.rttm"), "--model", str(model)])
        err = capsys.readouterr().err.strip()
        assert code == 1 and len(err.splitlines()) == 1 and str(audio) in err and problem in err
    assert not (tmp_path / "o.rttm").exists()
    code = main(["diarize", str(bad), "--out", "o.rttm", "--num-speakers", "2", "--max-speakers", "3"])
    assert code == 1 and "not both" in capsys.readouterr().err


# ---- a real conversation -----------------------------------------------------------------------------------


def test_two_speaker_conversation_beats_a_one_speaker_guess(data_root: Path, tmp_path: Path) -> None:
    from ge2e.data.readers import load_split, read_corpus
    from ge2e.diarization.simulate import ConversationConfig, load_sources, make_conversation

    checkpoint = trained_checkpoint()
    speakers = sorted(load_split(data_root, "LibriSpeech", "test"))[:2]
    files = {s: [] for s in speakers}
    for utt in read_corpus(data_root / "LibriSpeech", "librispeech"):
        if utt.speaker in files and len(files[utt.speaker]) < 3:
            files[utt.speaker].append(utt.path)
    conv = make_conversation(
        load_sources(files), speakers, ConversationConfig(turns_per_speaker=3), np.random.default_rng(0)
    )
    model = SpeakerEncoder.load(checkpoint)
    speech = embed_speech(model, conv.wav, 16_000)
    ref = {"c": conv.reference}
    auto = der(ref, {"c": diarize_speech(speech)}).der
    one = der(ref, {"c": [Segment(s.start, s.end, "one") for s in conv.reference]}).der
    fixed = diarize_speech(speech, num_speakers=2)
    assert len({s.speaker for s in fixed}) == 2
    assert der(ref, {"c": fixed}).der < 0.5 * one, f"{checkpoint}: DER {der(ref, {'c': fixed}).der} vs {one}"
    assert auto < 0.5 * one, f"{checkpoint}: DER {auto} with the estimated speaker count vs {one} for one speaker"

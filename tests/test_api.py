"""Public API: load_model (bundled and user checkpoints, cache, calibration), embed, verify, identify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import ge2e
from ge2e import api, pretrained
from ge2e.audio import preprocess
from ge2e.config import AudioConfig, ModelConfig
from ge2e.errors import AudioError, AudioTooShort, CheckpointError, Ge2eError
from ge2e.inference import Inference, embed_frames
from ge2e.model import SpeakerEncoder

SR = 16_000
BUNDLED = api.bundled_model_path()
needs_bundled = pytest.mark.skipif(
    not BUNDLED.exists(), reason=f"bundled model {BUNDLED} not present yet (the lead adds ge2e_small.pt)"
)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny encoder without VAD, so that noise counts as an utterance: API mechanics only."""
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    model = SpeakerEncoder(ModelConfig(hidden_size=16, proj_size=0, num_layers=1), AudioConfig(vad=False))
    model.save(path)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_path: Path) -> SpeakerEncoder:
    return api.load_model(tiny_path)


def noise(seed: int, seconds: float = 1.0) -> np.ndarray:
    """Coloured noise ``(L,)`` float32: each seed gives a different spectrum, hence a different d-vector."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(int(SR * seconds))
    kernel = rng.standard_normal(16)
    return (0.1 * np.convolve(white, kernel, mode="same")).astype(np.float32)


# ---- loading ----------------------------------------------------------------------------------------------------


def test_load_model_is_cached_and_reloaded_when_the_file_changes(tiny_path: Path, tmp_path: Path) -> None:
    assert api.load_model(tiny_path) is api.load_model(str(tiny_path))
    path = tmp_path / "m.pt"
    SpeakerEncoder(ModelConfig(hidden_size=8, proj_size=0, num_layers=1)).save(path)
    mtime = path.stat().st_mtime_ns
    assert api.load_model(path).embedding_size == 8
    SpeakerEncoder(ModelConfig(hidden_size=12, proj_size=0, num_layers=1)).save(path)
    os.utime(path, ns=(mtime, mtime + 10**9))  # coarse file-system clocks may not tick between two saves
    assert api.load_model(path).embedding_size == 12


def test_load_model_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="model file not found"):
        api.load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as info:
        api.load_model(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_bundled_model_missing_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pretrained, "bundled_model_path", lambda int8=False: tmp_path / "ge2e_small.pt")
    with pytest.raises(CheckpointError, match="bundled model file is missing"):
        api.load_model()


def test_bundled_form_follows_onnxruntime_and_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """int8 ONNX where onnxruntime is installed and the model runs on the CPU; float32 PyTorch otherwise."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(pretrained, "onnxruntime_available", lambda: True)
    assert pretrained._bundled_int8(None, cpu) and not pretrained._bundled_int8(None, cuda)
    assert not pretrained._bundled_int8(False, cpu) and pretrained._bundled_int8(True, cpu)
    with pytest.raises(Ge2eError, match="CPU only"):
        pretrained._bundled_int8(True, cuda)
    monkeypatch.setattr(pretrained, "onnxruntime_available", lambda: False)
    assert not pretrained._bundled_int8(None, cpu)
    with pytest.raises(Ge2eError, match="onnxruntime"):
        pretrained._bundled_int8(True, cpu)


def test_int8_applies_to_the_bundled_model_only(tiny_path: Path) -> None:
    with pytest.raises(Ge2eError, match="bundled model"):
        api.load_model(tiny_path, int8=True)


# ---- calibration --------------------------------------------------------------------------------------------------


def test_threshold_comes_from_the_calibration_file(tmp_path: Path) -> None:
    path = tmp_path / "cal.pt"
    SpeakerEncoder(ModelConfig(hidden_size=8, proj_size=0, num_layers=1)).save(path)
    with pytest.raises(Ge2eError, match="no calibrated threshold"):
        api.default_threshold(api.load_model(path))
    api.calibration_path(path).write_text(json.dumps({"threshold": 0.42, "model_sha256": api.file_sha256(path)}))
    os.utime(path, ns=(path.stat().st_mtime_ns, path.stat().st_mtime_ns + 10**9))  # new cache key
    assert api.default_threshold(api.load_model(path)) == pytest.approx(0.42)


def test_stale_calibration_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "stale.pt"
    SpeakerEncoder(ModelConfig(hidden_size=8, proj_size=0, num_layers=1)).save(path)
    api.calibration_path(path).write_text(json.dumps({"threshold": 0.42, "model_sha256": "0" * 64}))
    assert api.load_model(path).calibration is None


# ---- embedding ------------------------------------------------------------------------------------------------------


def test_items_can_be_paths_arrays_or_tuples(tiny: SpeakerEncoder, tmp_path: Path) -> None:
    wav = noise(0)
    path = tmp_path / "a.wav"
    sf.write(path, wav, SR, subtype="FLOAT")
    from_array = api.embed_utterance(wav, tiny, sr=SR)
    assert from_array.shape == (tiny.embedding_size,) and from_array.dtype == np.float32
    assert np.linalg.norm(from_array) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(api.embed_utterance((wav, SR), tiny), from_array, atol=1e-6)
    np.testing.assert_allclose(api.embed_utterance(path, tiny), from_array, atol=1e-5)
    np.testing.assert_allclose(Inference(tiny).embed_utterance(wav, SR), from_array, atol=1e-5)


def test_embed_speaker_is_the_normalised_mean(tiny: SpeakerEncoder) -> None:
    items = [(noise(s), SR) for s in (1, 2, 3)]
    each = np.stack([api.embed_utterance(item, tiny) for item in items])
    expected = each.mean(axis=0) / np.linalg.norm(each.mean(axis=0))
    np.testing.assert_allclose(api.embed_speaker(items, tiny), expected, atol=1e-5)


def test_array_without_sample_rate_is_an_error(tiny: SpeakerEncoder) -> None:
    with pytest.raises(AudioError, match="sample rate"):
        api.embed_utterance(noise(0), tiny)


def test_embed_files_skips_bad_files(tiny: SpeakerEncoder, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
    sf.write(good, noise(4), SR)
    bad.write_bytes(b"RIFF garbage")
    result = api.embed_files([good, bad], tiny, progress=False)
    assert result.paths == [str(good)] and result.embeddings.shape == (1, tiny.embedding_size)
    assert "cannot decode" in result.errors[str(bad)]


# ---- decisions ------------------------------------------------------------------------------------------------------


def test_verify_score_and_decision(tiny: SpeakerEncoder) -> None:
    enroll, test = [(noise(5), SR), (noise(6), SR)], (noise(7), SR)
    expected = float(np.dot(api.embed_speaker(enroll, tiny), api.embed_utterance(test, tiny)))
    low = api.verify(enroll, test, tiny, threshold=expected - 1e-4)
    high = api.verify(enroll, test, tiny, threshold=expected + 1e-4)
    assert low.score == pytest.approx(expected, abs=1e-5)
    assert (low.same_speaker, low.threshold) == (True, pytest.approx(expected - 1e-4))
    assert high.same_speaker is False
    with pytest.raises(Ge2eError, match="no calibrated threshold"):
        api.verify(enroll, test, tiny)


def test_verify_reports_the_bad_file(tiny: SpeakerEncoder, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(AudioError) as info:
        api.verify([(noise(1), SR)], bad, tiny, threshold=0.5)
    assert str(bad) in str(info.value)


def test_short_speech_is_scored_and_flagged_short(tiny: SpeakerEncoder) -> None:
    """0.2 s (a digit), under the 250 ms that training data needs (still refused there): scored, flagged short."""
    enroll, short, long = [(noise(5, 2.0), SR)], (noise(7, 0.2), SR), (noise(7, 2.0), SR)
    result = api.verify(enroll, short, tiny, threshold=0.5)
    assert result.short and result.speech_seconds == pytest.approx(0.18)
    assert result.score == pytest.approx(
        float(np.dot(api.embed_speaker(enroll, tiny), api.embed_utterance(short, tiny)))
    )
    assert not api.verify(enroll, long, tiny, threshold=0.5).short
    (match,) = api.identify(short, {"a": enroll}, tiny)
    assert match.short and match.speech_seconds == pytest.approx(0.18)
    with pytest.raises(AudioTooShort, match="200 ms of audio, need 250 ms"):
        preprocess(short, cfg=tiny.audio)


def test_identify_ranks_speakers(tiny: SpeakerEncoder) -> None:
    test = (noise(8), SR)
    speakers = {
        "other": [(noise(9), SR)],
        "self": api.embed_utterance(test, tiny) * 3.0,  # any scale: embeddings are normalised
        "third": [(noise(10), SR), (noise(11), SR)],
    }
    ranked = api.identify(test, speakers, tiny)
    assert ranked[0].speaker == "self" and ranked[0].score == pytest.approx(1.0, abs=1e-5)
    assert ranked[1].score >= ranked[2].score
    with pytest.raises(Ge2eError, match="wrap a waveform"):
        api.identify(test, {"x": noise(1)}, tiny)


def test_import_is_light_and_exports_resolve() -> None:
    code = "import sys, ge2e; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert ge2e.verify is api.verify and ge2e.SpeakerEncoder is SpeakerEncoder
    assert all(getattr(ge2e, name) is not None for name in ge2e.__all__)
    with pytest.raises(AttributeError):
        ge2e.no_such_name  # noqa: B018


# ---- the bundled model on real held-out speakers ---------------------------------------------------------------------


@needs_bundled
@pytest.mark.parametrize("int8", [False, True])
def test_bundled_calibration_matches_the_weights(int8: bool) -> None:
    if int8:
        pytest.importorskip("onnxruntime")
    model = api.load_model(int8=int8)
    assert model.calibration is not None, f"{api.bundled_model_path(int8)}: calibration missing or for other weights"
    assert -1.0 < api.default_threshold(model) < 1.0
    # both forms are calibrated on the same dev lists, each on its own scores
    assert model.calibration["data"] == api.load_model(int8=False).calibration["data"]


@needs_bundled
def test_bundled_int8_is_an_export_of_the_bundled_weights(data_root: Path) -> None:
    """The default CPU model (with onnxruntime) is the int8 ONNX export of ge2e_small.pt, not a stale one: the
    two give nearly the same d-vectors on held-out speech, and their own thresholds differ little."""
    pytest.importorskip("onnxruntime")
    from ge2e.export import OnnxEncoder

    default, fp32 = api.load_model(), api.load_model(int8=False)
    assert isinstance(default.encoder, OnnxEncoder) and default.int8 and isinstance(fp32.encoder, SpeakerEncoder)
    assert default.fingerprint == api.file_sha256(api.bundled_model_path(int8=True))
    files = sorted((data_root / "LibriSpeech" / "test-other").rglob("*.flac"))[:3]
    cosines = np.sum(api.embed_utterances(files, default) * api.embed_utterances(files, fp32), axis=1)
    assert cosines.min() > 0.99, cosines
    assert abs(api.default_threshold(default) - api.default_threshold(fp32)) < 0.05


@needs_bundled
def test_bundled_model_verifies_test_speakers(data_root: Path) -> None:
    """Held-out LibriSpeech test speakers, 3 enrollment utterances each, 2 test utterances each against every
    speaker: most same-speaker trials must say same and most different-speaker trials must say different."""
    root = data_root / "LibriSpeech" / "test-other"
    speakers = [sorted(s.rglob("*.flac")) for s in sorted(p for p in root.iterdir() if p.is_dir())[:4]]
    model = ge2e.load_model()
    threshold = api.default_threshold(model)
    enrolled = [api.embed_speaker(files[:3], model) for files in speakers]
    tests = api.embed_utterances([f for files in speakers for f in files[3:5]], model)
    owner = np.repeat(np.arange(len(speakers)), 2)
    scores = tests @ np.stack(enrolled).T
    is_target = owner[:, None] == np.arange(len(speakers))[None, :]
    accepted = scores >= threshold
    assert accepted[is_target].mean() > 0.5, scores[is_target]
    assert (~accepted[~is_target]).mean() > 0.5, scores[~is_target]
    assert scores[is_target].mean() > scores[~is_target].mean()
    result = ge2e.verify(speakers[0][:3], speakers[0][3], model)
    assert result.score == pytest.approx(float(scores[0, 0]), abs=1e-5) and result.threshold == threshold


# ---- partials, batches, pairs, namespace --------------------------------------------------------------------------


def test_partials_are_the_windows_behind_the_utterance_dvector(tiny: SpeakerEncoder) -> None:
    wav = noise(7, seconds=4.0)
    embedding, partials, spans = ge2e.embed_utterance(wav, tiny, sr=SR, return_partials=True)
    assert partials.shape == (4, tiny.embedding_size) and spans.shape == (4, 2)  # 160-frame windows, hop 80
    np.testing.assert_allclose(np.linalg.norm(partials, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embedding, ge2e.embed_utterance(wav, tiny, sr=SR), atol=1e-5)
    np.testing.assert_allclose(spans[:, 0], [0.0, 0.8, 1.6, 2.38], atol=1e-9)
    np.testing.assert_allclose(spans[:, 1] - spans[:, 0], 1.615, atol=1e-9)  # 160 frames: 159 hops + one window
    mel = preprocess(wav, SR, tiny.audio)  # the utterance's frames; the last window ends on the last frame
    for row, start in zip(partials, (0, 80, 160, len(mel) - 160), strict=True):
        window = embed_frames(tiny, mel[None, start : start + 160])[0].numpy()
        np.testing.assert_allclose(row, window / np.linalg.norm(window), atol=1e-5)


@needs_bundled
def test_partial_spans_are_on_the_inputs_timeline(data_root: Path) -> None:
    """Silence the VAD cuts before framing still counts in the spans: 1 s of it before speech delays every span."""
    wav, sr = sf.read(data_root / "LibriSpeech/test-other/2033/164914/2033-164914-0000.flac", dtype="float32")
    _, _, plain = ge2e.embed_utterance(wav, sr=sr, return_partials=True)
    _, _, padded = ge2e.embed_utterance(np.concatenate([np.zeros(sr, np.float32), wav]), sr=sr, return_partials=True)
    np.testing.assert_allclose(padded, plain + 1.0, atol=0.4)  # the VAD places pause edges a little differently
    assert plain[-1, 1] <= len(wav) / sr


def test_in_memory_arrays_embed_in_batches(tiny: SpeakerEncoder) -> None:
    waves = [noise(seed, seconds=0.5 + seed / 4) for seed in range(5)]
    batched = ge2e.embed_utterances(waves, tiny, sr=SR, batch_size=2)
    one_by_one = np.stack([ge2e.embed_utterance(w, tiny, sr=SR) for w in waves])
    assert batched.shape == (5, tiny.embedding_size)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    with pytest.raises(Ge2eError, match="batch_size"):
        ge2e.embed_utterances(waves, tiny, sr=SR, batch_size=0)


def test_score_pairs_scores_each_pair_like_verify(tiny: SpeakerEncoder, tmp_path: Path) -> None:
    paths = []
    for seed in range(3):
        paths.append(tmp_path / f"{seed}.wav")
        sf.write(paths[-1], noise(seed), SR)
    pairs = [(paths[0], paths[1]), (paths[0], paths[0]), (paths[2], (noise(1), SR))]
    scores = ge2e.score_pairs(pairs, tiny)
    want = [api.verify([a], b, tiny, threshold=0.0).score for a, b in pairs]
    np.testing.assert_allclose(scores, want, atol=1e-5)
    assert scores[1] == pytest.approx(1.0, abs=1e-5)


def test_the_namespace_lists_the_public_api_only() -> None:
    public = [name for name in dir(ge2e) if not name.startswith("__")]
    assert public == sorted(n for n in ge2e.__all__ if n != "__version__")
    assert {"embed_utterances", "score_pairs"} <= set(public) and "importlib" not in dir(ge2e)

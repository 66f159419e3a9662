"""Behaviour that mutation testing (``make mutate``, docs/testing.md) found untested: TE2E's random negative
speaker and enrollment sets, loss construction, the averaging and batching of inference, and error messages
that name the argument at fault."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

import ge2e
from ge2e import inference
from ge2e.audio import log_mel, normalize_volume, peak_dbfs
from ge2e.config import AudioConfig, InferenceConfig, LossConfig, ModelConfig
from ge2e.errors import AudioError, Ge2eError
from ge2e.inference import (
    EmbeddedFiles,
    Inference,
    as_items,
    average_embeddings,
    embed_frames,
    is_short,
    model_fingerprint,
    normalize_average,
    window_starts,
)
from ge2e.loss import GE2ELoss, TE2ELoss, build_loss, enrollment_indices
from ge2e.metrics import det_curve, eer, min_dcf, threshold_at_far
from ge2e.model import SpeakerEncoder
from ge2e.scoring import as_norm, cosine_matrix, cosine_scores, s_norm

# ------------------------------------------------------------------------------------------------------ loss


def test_enrollment_indices_are_the_next_p_utterances_cyclically():
    assert enrollment_indices(4, 1).tolist() == [[1], [2], [3], [0]]
    assert enrollment_indices(4, 3).tolist() == [[1, 2, 3], [2, 3, 0], [3, 0, 1], [0, 1, 2]]
    for p in (0, 4):
        with pytest.raises(ValueError, match=f"P={p} with M=4"):
            enrollment_indices(4, p)


def test_te2e_negative_speaker_is_drawn_from_the_other_speakers():
    e = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss = TE2ELoss().double()
    by_shift = {r: loss(e, shift=r).item() for r in range(3)}
    torch.manual_seed(0)
    drawn = []
    for _ in range(40):
        value = loss(e).item()
        drawn.append(next(r for r, v in by_shift.items() if v == pytest.approx(value, abs=1e-12)))
    assert set(drawn) == {1, 2}  # both other speakers, never the speaker itself (shift 0)


def test_te2e_gradient_scale_on_w_and_b():
    e = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(1))
    scaled, plain = TE2ELoss(grad_scale=0.01), TE2ELoss(grad_scale=1.0)
    scaled(e, shift=1).backward()
    plain(e, shift=1).backward()
    torch.testing.assert_close(scaled.w.grad, 0.01 * plain.w.grad)
    torch.testing.assert_close(scaled.b.grad, 0.01 * plain.b.grad)
    assert plain.w.grad.abs() > 0


def test_build_loss_passes_every_setting():
    cfg = LossConfig(method="te2e", init_w=3.0, init_b=-1.0, min_w=0.5, grad_scale=0.1, te2e_enroll=2)
    te2e = build_loss(cfg)
    assert isinstance(te2e, TE2ELoss) and te2e.num_enroll == 2 and te2e.min_w == 0.5
    assert (te2e.w.item(), te2e.b.item()) == (3.0, -1.0)
    e = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(2))
    te2e(e, shift=1).backward()
    reference = TE2ELoss(3.0, -1.0, num_enroll=2, grad_scale=1.0)
    reference(e, shift=1).backward()
    torch.testing.assert_close(te2e.w.grad, 0.1 * reference.w.grad)
    for method in ("softmax", "contrast"):
        ge2e = build_loss(LossConfig(method=method, init_w=2.0, init_b=0.5, min_w=0.25, grad_scale=0.2))
        assert isinstance(ge2e, GE2ELoss) and ge2e.method == method and ge2e.min_w == 0.25
        assert (ge2e.w.item(), ge2e.b.item()) == (2.0, 0.5)
        ge2e(e).backward()
        plain = GE2ELoss(2.0, 0.5, method, grad_scale=1.0)
        plain(e).backward()
        torch.testing.assert_close(ge2e.w.grad, 0.2 * plain.w.grad)  # same loss, the configured gradient scale
        torch.testing.assert_close(ge2e.b.grad, 0.2 * plain.b.grad)
        assert plain.w.grad.abs() > 0


def test_bad_loss_settings_raise():
    with pytest.raises(ValueError, match="method"):
        GE2ELoss(method="triplet")
    with pytest.raises(ValueError, match="init_w"):
        GE2ELoss(init_w=0.0)


# ------------------------------------------------------------------------------------------------- inference


def test_average_embeddings_normalises_rows_of_any_norm():
    rows = np.array([[3.0, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, -500.0]])
    got = average_embeddings(list(rows.astype(np.float32)))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.array([1.0, 1.0, -1.0]) / np.sqrt(3), rtol=1e-6)


def test_average_embeddings_of_float32_rows_beyond_float32_squares():
    """A norm whose square overflows float32 (3e25): the average is taken in float64."""
    rows = np.array([[3e25, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, -5.0]], dtype=np.float32)
    for given in (rows, list(rows)):
        np.testing.assert_allclose(average_embeddings(given), np.array([1.0, 1.0, -1.0]) / np.sqrt(3), rtol=1e-6)


def test_normalize_average_per_group():
    g = torch.Generator().manual_seed(3)
    vectors = torch.randn(7, 4, generator=g) * torch.rand(7, 1, generator=g) * 10
    groups = torch.tensor([0, 2, 2, 0, 1, 2, 0])
    got = normalize_average(vectors, groups, 3)
    assert got.shape == (3, 4)
    for k in range(3):
        torch.testing.assert_close(got[k], normalize_average(vectors[groups == k]))


def test_embed_frames_in_batches_equals_one_pass():
    model = SpeakerEncoder(ModelConfig(hidden_size=8, proj_size=0, num_layers=1), inference=InferenceConfig())
    frames = torch.randn(7, 20, 40, generator=torch.Generator().manual_seed(4))
    whole = embed_frames(model, frames)
    model.inference = InferenceConfig(batch_windows=3)
    torch.testing.assert_close(embed_frames(model, frames), whole)
    assert embed_frames(model, frames[:0]).shape == (0, 8)


def test_embed_files_batches_and_reports_each_bad_file(tmp_path, caplog):
    model = SpeakerEncoder(ModelConfig(hidden_size=8, proj_size=0, num_layers=1), audio=AudioConfig(vad=False))
    t = np.arange(16_000) / 16_000
    paths = []
    for k in range(5):
        paths.append(tmp_path / f"{k}.wav")
        sf.write(paths[-1], (0.3 * np.sin(2 * np.pi * (120 + 40 * k) * t)).astype(np.float32), 16_000)
    missing = tmp_path / "missing.wav"
    with caplog.at_level(logging.WARNING):
        result = Inference(model).embed_files([paths[0], missing, *paths[1:]], batch_size=2, progress=False)
    assert result.paths == [str(p) for p in paths]
    assert result.errors == {str(missing): "file not found"}
    assert str(missing) in caplog.text
    expected = np.stack([Inference(model).embed_utterance(p) for p in paths])
    np.testing.assert_allclose(result.embeddings, expected, rtol=1e-4, atol=1e-5)
    mapping = result.as_dict()
    assert list(mapping) == result.paths
    np.testing.assert_array_equal(mapping[str(paths[3])], result.embeddings[3])
    empty = Inference(model).embed_files([missing], progress=False)
    assert empty.embeddings.shape == (0, 8) and empty.embeddings.dtype == np.float32 and empty.paths == []


def _fake_features(monkeypatch, count):
    """``count`` file names whose log-mel frames come from a table instead of audio; the sizes of the batches that
    reach ``embed_mels`` are recorded in the returned list."""
    rng = np.random.default_rng(6)
    mels = {f"{k}.wav": rng.standard_normal((20, 40)).astype(np.float32) for k in range(count)}
    monkeypatch.setattr(inference.Inference, "features", lambda self, path: mels[str(path)])
    sizes: list[int] = []
    real = inference.embed_mels

    def recording(encoder, pending):
        sizes.append(len(pending))
        return real(encoder, pending)

    monkeypatch.setattr(inference, "embed_mels", recording)
    return list(mels), sizes


@pytest.mark.parametrize("through_api", [False, True])
def test_embed_files_defaults_are_batches_of_32_and_a_progress_bar(monkeypatch, capsys, through_api):
    model = SpeakerEncoder(ModelConfig(hidden_size=8, proj_size=0, num_layers=1))
    paths, sizes = _fake_features(monkeypatch, 40)
    run = (lambda paths, **k: ge2e.embed_files(paths, model, **k)) if through_api else Inference(model).embed_files
    result = run(paths)
    assert sizes == [32, 8] and result.paths == paths and result.embeddings.shape == (40, 8)
    bar = capsys.readouterr().err
    assert "embed: 100%" in bar and " 40/40 " in bar and ("file/s" in bar or "s/file" in bar)
    sizes.clear()
    run(paths[:7], batch_size=3, progress=False)
    assert sizes == [3, 3, 1] and capsys.readouterr().err == ""


def test_embed_files_logs_each_skipped_file(tmp_path, caplog):
    model = SpeakerEncoder(ModelConfig(hidden_size=8, proj_size=0, num_layers=1))
    missing = tmp_path / "missing.wav"
    with caplog.at_level(logging.WARNING, logger="ge2e.inference"):
        Inference(model).embed_files([missing], progress=False)
    assert [r.getMessage() for r in caplog.records] == [f"skipped {missing}: file not found"]


def test_embedded_files_as_dict_needs_one_embedding_per_path():
    with pytest.raises(ValueError):
        EmbeddedFiles(["a.wav", "b.wav"], np.zeros((1, 3), dtype=np.float32)).as_dict()


def test_short_is_strictly_below_one_second():
    assert is_short(0.99) and not is_short(1.0) and not is_short(1.5)


def test_model_fingerprint_of_an_encoder_without_a_fingerprint_attribute():
    class Bare(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)
            self.audio, self.inference = AudioConfig(), InferenceConfig()

    assert len(model_fingerprint(Bare())) == 64


def test_model_fingerprint_follows_weights_and_settings_unless_the_file_gave_one():
    torch.manual_seed(0)
    tiny = ModelConfig(hidden_size=8, proj_size=0, num_layers=1)
    a = SpeakerEncoder(tiny, audio=AudioConfig(vad=False))
    same = SpeakerEncoder(tiny, audio=AudioConfig(vad=False))
    same.load_state_dict(a.state_dict())
    assert model_fingerprint(a) == model_fingerprint(same) and len(model_fingerprint(a)) == 64
    other_audio = SpeakerEncoder(tiny, audio=AudioConfig(vad=True))
    other_audio.load_state_dict(a.state_dict())
    other_window = SpeakerEncoder(tiny, audio=AudioConfig(vad=False), inference=InferenceConfig(window_frames=100))
    other_window.load_state_dict(a.state_dict())
    with torch.no_grad():
        same.linear.bias[0] += 1e-3
    prints = {model_fingerprint(m) for m in (a, same, other_audio, other_window)}
    assert len(prints) == 4
    assert model_fingerprint(Inference(a)) == model_fingerprint(a)
    assert model_fingerprint(Inference(a, fingerprint="sha256-of-the-file")) == "sha256-of-the-file"


def test_speaker_embedding_of_arrays_uses_their_rate():
    model = SpeakerEncoder(ModelConfig(hidden_size=8, proj_size=0, num_layers=1), audio=AudioConfig(vad=False))
    t = np.arange(8_000) / 8_000
    clips = [(0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (150, 210)]
    got = Inference(model).embed_speaker(clips, sr=8_000)
    expected = average_embeddings([Inference(model).embed_utterance(c, sr=8_000) for c in clips])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------- errors name what is wrong


def test_scoring_errors_name_the_argument_and_its_sizes():
    rng = np.random.default_rng(0)
    e, c = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
    for args, message in [
        ((e[0], e), r"^a must be 2-D \(n, D\), got shape \(4,\)$"),
        ((e, e[0]), r"^b must be 2-D \(n, D\), got shape \(4,\)$"),
    ]:
        with pytest.raises(ValueError, match=message):
            cosine_matrix(*args)
    scores = np.zeros(3)
    for args, message in [
        ((scores[:, None], e, e, c), r"^scores must be 1-D, got shape \(3, 1\)$"),
        ((scores, e[0], e, c), r"^enroll_emb must be 2-D"),
        ((scores, e, e[0], c), r"^test_emb must be 2-D"),
        ((scores, e, e, c[0]), r"^cohort must be 2-D"),
        ((scores, e[:2], e, c), r"^lengths differ: scores 3, enroll_emb 2, test_emb 3$"),
        ((scores, e, e[:1], c), r"^lengths differ: scores 3, enroll_emb 3, test_emb 1$"),
        ((scores, e, e, c[:1]), r"^the cohort needs at least 2 embeddings, got 1$"),
    ]:
        with pytest.raises(ValueError, match=message):
            s_norm(*args)
    with pytest.raises(ValueError, match=r"^top_n must be in \[2, cohort size 5\], got 6$"):
        as_norm(scores, e, e, c, top_n=6)


def test_as_norm_uses_the_300_closest_cohort_scores_by_default():
    rng = np.random.default_rng(1)
    e, t, cohort = rng.standard_normal((4, 6)), rng.standard_normal((4, 6)), rng.standard_normal((301, 6))
    raw = cosine_scores(e, t)
    np.testing.assert_allclose(as_norm(raw, e, t, cohort), as_norm(raw, e, t, cohort, top_n=300))
    assert not np.allclose(as_norm(raw, e, t, cohort), s_norm(raw, e, t, cohort))


def test_min_dcf_rejects_a_zero_cost():
    for kwargs in ({"c_fa": 0.0}, {"c_miss": 0.0}):
        with pytest.raises(ValueError, match="must be > 0"):
            min_dcf([0.1, 0.9], [0, 1], **kwargs)


def test_log_mel_errors_and_output_type():
    with pytest.raises(ValueError, match=r"^log_mel expects \(L,\) or \(B, L\) samples, got shape \(1, 2, 400\)$"):
        log_mel(torch.zeros(1, 2, 400))
    with pytest.raises(ValueError, match=r"^n_fft \(256\) must be >= the window length \(400 samples\)$"):
        log_mel(torch.zeros(800), AudioConfig(n_fft=256))
    wav = torch.from_numpy(np.random.default_rng(2).standard_normal(1_600)) * 0.1  # float64 samples
    out = log_mel(wav, AudioConfig(n_fft=400))  # n_fft equal to the window is allowed
    assert out.dtype == torch.float32 and out.shape == (1 + (1_600 - 400) // 160, 40)


def test_metric_input_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="must be 1-D"):
        eer(np.zeros((2, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"^scores contain 2 NaN or infinite value\(s\)$"):
        eer([0.1, np.nan, np.inf, 0.3], [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"^scores contain 3 NaN or infinite value\(s\)$"):
        eer([0.1, np.nan, np.inf, -np.inf], [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"^labels must be 0 \(non-target\) or 1 \(target\)$"):
        eer([0.1, 0.2], [0, 2])
    for far in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"^the target false-accept rate must be in \(0, 1\), got "):
            threshold_at_far([0.1, 0.9], [0, 1], far)


def test_det_points_between_adjacent_floats():
    """Two scores one float apart: the midpoint rounds onto the lower one, so the upper must be the threshold."""
    low = 1.0
    high = float(np.nextafter(low, 2.0))
    p_fa, p_miss, thresholds = det_curve([low, high], [0, 1])
    assert thresholds.tolist() == [low, high, float(np.nextafter(high, np.inf))]
    assert (p_fa.tolist(), p_miss.tolist()) == ([1.0, 0.0, 0.0], [0.0, 0.0, 1.0])
    # float32 scores one float32 apart: in float64 the EER threshold lies between them, not on either
    pair = np.array([1.0, np.nextafter(np.float32(1.0), np.float32(2.0))], dtype=np.float32)
    assert det_curve(pair, [0, 1])[2].dtype == np.float64
    assert eer(pair, [0, 1]) == (0.0, 1.0 + 2.0**-24)


def test_check_batch_names_the_shape():
    with pytest.raises(ValueError, match=r"^embeddings must have shape \(N, M, D\), got \(3, 4\)$"):
        GE2ELoss()(torch.zeros(3, 4))


def test_peak_level_and_empty_or_silent_audio():
    assert peak_dbfs(np.array([0.25, -0.5], dtype=np.float32)) == pytest.approx(20 * np.log10(0.5), abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # silence is -inf without numpy's divide-by-zero warning from log10(0)
        assert peak_dbfs(np.zeros(0, dtype=np.float32)) == float("-inf")
        assert peak_dbfs(np.zeros(8, dtype=np.float32)) == float("-inf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" from an empty input
        for method in ("peak", "loudness"):
            assert normalize_volume(np.zeros(0, dtype=np.float32), method).shape == (0,)


def test_normalize_volume_returns_float32_and_defaults_to_loudness_at_minus_30_dbfs():
    wav = 0.1 * np.sin(np.linspace(0.0, 60.0, 4_000))  # float64 samples
    for method in ("none", "peak", "loudness"):
        assert normalize_volume(wav, method).dtype == np.float32
    assert normalize_volume(np.zeros(5), "peak").dtype == np.float32
    default = normalize_volume(wav)
    np.testing.assert_array_equal(default, normalize_volume(wav, "loudness", -30.0))
    assert 20 * np.log10(np.sqrt(np.mean(default.astype(np.float64) ** 2))) == pytest.approx(-30.0, abs=1e-4)


def test_loudness_of_samples_whose_squares_overflow_float32():
    wav = np.array([3e20, -4e20, 1e20, -2e20], dtype=np.float32)  # finite, squares beyond float32's 3.4e38
    out = normalize_volume(wav, "loudness", -30.0)
    rms = np.sqrt(np.mean(out.astype(np.float64) ** 2))
    assert 20 * np.log10(rms) == pytest.approx(-30.0, abs=1e-4)


def test_cosine_scores_errors_name_the_side():
    e = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"^enroll must be 2-D"):
        cosine_scores(e[0], e)
    with pytest.raises(ValueError, match=r"^test must be 2-D"):
        cosine_scores(e, e[0])


def test_inference_input_errors_and_single_items():
    with pytest.raises(ValueError, match=r"^cannot window an utterance with no frames$"):
        window_starts(0)
    with pytest.raises(Ge2eError, match=r"^no utterances given$"):
        as_items([])
    assert as_items("a.wav") == ["a.wav"] and as_items(["a.wav", "b.wav"]) == ["a.wav", "b.wav"]
    pair = (np.zeros(400, dtype=np.float32), 16_000)
    assert len(as_items(pair)) == 1 and as_items(pair)[0] is pair  # one (samples, rate) item, not two items
    vectors = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    grouped = normalize_average(vectors, torch.tensor([0, 1, 0, 1]), 2)
    torch.testing.assert_close(
        normalize_average(vectors, torch.zeros(4, dtype=torch.long)), normalize_average(vectors)[None]
    )
    assert grouped.dtype == torch.float64
    torch.testing.assert_close(grouped[1], normalize_average(vectors[1::2]))


def test_inference_features_errors_use_the_given_name():
    model = Inference(SpeakerEncoder(ModelConfig(hidden_size=8, proj_size=0, num_layers=1)))
    with pytest.raises(AudioError, match=r"^clip-7: ") as err:
        model.features(np.zeros(16_000, dtype=np.float32), 16_000, name="clip-7")
    assert err.value.path == "clip-7"

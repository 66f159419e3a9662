"""One audio -> frames -> d-vector path: every entry point (API, CLI, service, diarization, cache) goes through
``ge2e.audio.preprocess`` / ``load_speech`` and ``ge2e.inference.embed_mels``; exported encoders (.onnx, .ts) work
wherever a checkpoint does, with its calibration; m4a decodes through ffmpeg; the VAD's fast path finds the same
speech; ``--threads`` defaults to one thread."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch

from ge2e import audio, decoding
from ge2e.api import embed_utterance, verify
from ge2e.audio import load_audio, load_speech, preprocess, speech_regions
from ge2e.cli import main
from ge2e.export import export
from ge2e.inference import embed_mels, model_fingerprint
from ge2e.pretrained import bundled_model_path, default_threshold, load_model

pytest.importorskip("onnxruntime")

TOL = 1e-3  # exported float32 encoders agree with PyTorch to ~1e-5; scores to well under this


@pytest.fixture(scope="module")
def libri(data_root: Path) -> dict[str, list[Path]]:
    """Two LibriSpeech test speakers, three utterances each."""
    speakers = sorted((data_root / "LibriSpeech" / "test-other").iterdir())[:2]
    return {s.name: sorted(s.rglob("*.flac"))[:3] for s in speakers}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled model as a checkpoint with its calibration beside it, and exported as ONNX and TorchScript."""
    root = tmp_path_factory.mktemp("models")
    pt = root / "model.pt"
    shutil.copy(bundled_model_path(), pt)
    record = json.loads(bundled_model_path().with_suffix(".json").read_text())
    (root / "model.json").write_text(json.dumps({**record, "model_sha256": None}))
    model = load_model(pt)
    export(model.encoder, root / "model.onnx", "onnx", calibration=model.calibration)
    export(model.encoder, root / "model.ts", "torchscript", calibration=model.calibration)
    return {"pt": pt, "onnx": root / "model.onnx", "ts": root / "model.ts"}


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


# ------------------------------------------------------------------------------------------ exported encoders


@pytest.mark.parametrize("kind", ["onnx", "ts"])
def test_exported_file_loads_with_the_checkpoints_calibration(models: dict[str, Path], kind: str) -> None:
    pt, exported = load_model(models["pt"]), load_model(models[kind])
    assert default_threshold(exported) == default_threshold(pt)
    assert model_fingerprint(exported) != model_fingerprint(pt)  # their own files, their own ids
    # the calibration travels inside the file: it survives without the .json beside it
    alone = models[kind].parent / "alone" / models[kind].name
    alone.parent.mkdir(exist_ok=True)
    shutil.copy(models[kind], alone)
    assert load_model(alone).calibration["threshold"] == pt.calibration["threshold"]


@pytest.mark.parametrize("kind", ["onnx", "ts"])
def test_verify_cli_gives_the_same_decisions(
    models: dict[str, Path], libri: dict[str, list[Path]], capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    (a1, a2, a3), (b1, _, _) = libri.values()
    for test in (a3, b1):
        pair = ("--enroll", a1, a2, "--test", test)
        want_status, want, want_origin = run(capsys, "verify", *pair, "--model", models["pt"])
        status, got, got_origin = run(capsys, "verify", *pair, "--model", models[kind])
        assert status == want_status, got_origin  # 0 accepted, 1 rejected
        assert got.split(":")[0] == want.split(":")[0]  # "same speaker" / "different speaker"
        assert float(got.split()[-4]) == pytest.approx(float(want.split()[-4]), abs=TOL)
        assert got_origin == want_origin  # the checkpoint's calibration, carried inside the exported file
    assert "same speaker" in run(capsys, "verify", "--enroll", a1, a2, "--test", a3, "--model", models["onnx"])[1]


def test_embed_eval_and_diarize_accept_onnx(
    models: dict[str, Path], libri: dict[str, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [p for paths in libri.values() for p in paths]
    npz = {}
    for kind in ("pt", "onnx"):
        assert run(capsys, "embed", *files, "--out", tmp_path / f"{kind}.npz", "--model", models[kind])[0] == 0
        npz[kind] = np.load(tmp_path / f"{kind}.npz")["embeddings"]
    np.testing.assert_allclose(npz["onnx"], npz["pt"], atol=TOL)

    (a1, a2, a3), (b1, b2, b3) = libri.values()
    pairs = [(1, a1, a2), (1, a1, a3), (1, b1, b2), (1, b2, b3), (0, a1, b1), (0, a2, b2), (0, a3, b3), (0, b1, a2)]
    trials = tmp_path / "trials.txt"
    trials.write_text("".join(f"{label} {e} {t}\n" for label, e, t in pairs))
    reports = {}
    for kind in ("pt", "onnx"):
        out = tmp_path / f"eval-{kind}"
        status, _, err = run(capsys, "eval", "--trials", trials, "--root", "/", "--out", out, "--model", models[kind])
        assert status == 0, err
        reports[kind] = json.loads((out / "report.json").read_text())
    assert reports["onnx"]["eer"] == pytest.approx(reports["pt"]["eer"], abs=1e-9)
    assert reports["onnx"]["n_trials"] == len(pairs)

    conversation = tmp_path / "conversation.wav"
    sf.write(conversation, np.concatenate([load_audio(p) for p in (a1, b1, a2, b2)]), 16_000)
    rttm = {}
    for kind in ("pt", "onnx"):
        out = tmp_path / f"{kind}.rttm"
        args = ["--num-speakers", "2", "--out", out, "--model", models[kind]]
        status, _, err = run(capsys, "diarize", conversation, *args)
        assert status == 0, err
        rttm[kind] = out.read_text()
    assert rttm["onnx"] == rttm["pt"]


def test_service_embeds_like_the_library_with_onnx(models: dict[str, Path], libri: dict[str, list[Path]], tmp_path):
    pytest.importorskip("fastapi")
    from ge2e.serve import ServeConfig, SpeakerStore, create_app

    key = "k" * 32
    clip = next(iter(libri.values()))[0]
    got = {}
    for kind in ("pt", "onnx"):
        model = load_model(models[kind])
        fingerprint = model_fingerprint(model)[:16]
        store = SpeakerStore(tmp_path / f"{kind}.sqlite", fingerprint, model.embedding_size)
        app = create_app(model, store, [key], ServeConfig(threshold=default_threshold(model)), fingerprint)

        async def call(app=app) -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
                return await c.post("/v1/embed", content=clip.read_bytes())

        response = asyncio.run(call())
        assert response.status_code == 200, response.text
        got[kind] = np.asarray(response.json()["embedding"], dtype=np.float32)
        np.testing.assert_allclose(got[kind], embed_utterance(clip, model), atol=1e-5)
    np.testing.assert_allclose(got["onnx"], got["pt"], atol=TOL)


def test_export_of_an_exported_file_is_one_clear_line(models: dict[str, Path], tmp_path: Path, capsys) -> None:
    status, _, err = run(capsys, "export", models["onnx"], tmp_path / "again.onnx")
    assert status == 1 and "already an exported encoder" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------- one front end


def test_every_input_kind_gives_the_same_dvector(models: dict[str, Path], libri: dict[str, list[Path]]) -> None:
    model = load_model(models["pt"])
    clip = next(iter(libri.values()))[0]
    wav, sr = sf.read(clip, dtype="float32")
    expected = embed_mels(model, [preprocess(clip, cfg=model.audio)])[0].numpy()
    for item, kwargs in [(clip, {}), (str(clip), {}), (clip.read_bytes(), {}), ((wav, sr), {}), (wav, {"sr": sr})]:
        np.testing.assert_allclose(embed_utterance(item, model, **kwargs), expected, atol=1e-6)
        np.testing.assert_allclose(model.embed_utterance(item, **kwargs), expected, atol=1e-6)


def test_cache_features_are_the_front_ends(models: dict[str, Path], libri: dict[str, list[Path]]) -> None:
    from ge2e.data.cache import FEATURE_DTYPE
    from ge2e.data.featurize import Featurizer

    model = load_model(models["pt"])
    clip = next(iter(libri.values()))[0]
    feats, problem = Featurizer(vars(model.audio), [], 0)((str(clip), ""))
    assert problem == ""
    np.testing.assert_array_equal(feats, preprocess(clip, cfg=model.audio).astype(FEATURE_DTYPE))


def test_diarization_takes_its_speech_from_load_speech(models, libri, monkeypatch: pytest.MonkeyPatch) -> None:
    from ge2e.diarization import embed_speech

    model = load_model(models["pt"])
    clip = next(iter(libri.values()))[0]
    wav, mask = load_speech(clip, cfg=model.audio)
    mask[: len(mask) // 2] = False  # a mask no VAD would give: diarization must follow it, not its own
    monkeypatch.setattr(audio, "load_speech", lambda *_, **__: (wav, mask))
    speech = embed_speech(model, clip)
    first = speech.speech_frames[0] * model.audio.hop_length + model.audio.win_length // 2
    assert first >= len(mask) // 2 and mask[first]


# -------------------------------------------------------------------------------------------------------- m4a


def test_m4a_embeds_through_ffmpeg(ffmpeg: str, libri: dict[str, list[Path]], tmp_path: Path, capsys) -> None:
    model = load_model()
    clip = next(iter(libri.values()))[0]
    m4a = tmp_path / "clip.m4a"
    subprocess.run([ffmpeg, "-v", "error", "-i", str(clip), "-c:a", "aac", "-b:a", "128k", str(m4a)], check=True)
    cosine = float(embed_utterance(m4a, model) @ embed_utterance(clip, model))
    assert cosine > 0.95  # AAC at 128 kbit/s: the same voice
    assert float(embed_utterance(m4a.read_bytes(), model) @ embed_utterance(m4a, model)) > 0.999
    status, out, err = run(capsys, "embed", m4a, "--out", tmp_path / "e.npz")
    assert status == 0 and "1 embeddings" in out, err


def test_m4a_without_ffmpeg_is_one_clear_line(
    libri: dict[str, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    m4a = tmp_path / "voxceleb2.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(200))
    monkeypatch.setattr(decoding.shutil, "which", lambda _: None)
    clip = next(iter(libri.values()))[0]
    status, _, err = run(capsys, "verify", "--enroll", clip, "--test", m4a)
    assert status == 2
    assert err.strip().splitlines() == [f"ge2e verify: error: {m4a}: .m4a audio needs ffmpeg, which is not installed "
                                        "(e.g. apt-get install ffmpeg)"]  # fmt: skip


# -------------------------------------------------------------------------------------------------------- VAD


def test_onnx_vad_finds_the_torchscript_vads_regions(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """silero's sequence ONNX model (one call per 16 s) against its streaming TorchScript model (one call per
    32 ms): the same speech regions, to the sample, on every corpus (wuw2 is 8 kHz telephone speech)."""
    files = [
        *sorted((data_root / "LibriSpeech" / "test-other").rglob("*.flac"))[:4],
        *sorted((data_root / "DSPSpeech-20").rglob("*.opus"))[:6],
        *sorted((data_root / "speech_commands_v0.02_test").rglob("*.opus"))[:6],
        *sorted((data_root / "speechocean762").rglob("*.opus"))[:3],
        *sorted((data_root / "wuw2").rglob("*.opus"))[:3],
    ]
    wavs = [load_audio(f) for f in files]
    fast = [speech_regions(w, 16_000) for w in wavs]
    monkeypatch.setattr(audio, "_silero_sequence", lambda: None)
    slow = [speech_regions(w, 16_000) for w in wavs]
    assert fast == slow
    assert sum(map(len, fast)) >= len(files)  # real speech was found: the comparison is not of empty lists


def test_vad_keeps_the_callers_thread_count() -> None:
    torch.set_num_threads(2)
    try:
        speech_regions(np.zeros(16_000, dtype=np.float32), 16_000)
        speech_regions(np.zeros(8_000, dtype=np.float32), 8_000)  # the TorchScript path at 8 kHz
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------------- threads


def test_threads_default_to_one_and_can_be_set(libri: dict[str, list[Path]], tmp_path: Path, capsys) -> None:
    clip = next(iter(libri.values()))[0]
    torch.set_num_threads(2)
    assert run(capsys, "embed", clip, "--out", tmp_path / "a.npz")[0] == 0
    assert torch.get_num_threads() == 1
    assert run(capsys, "embed", clip, "--out", tmp_path / "b.npz", "--threads", "2")[0] == 0
    assert torch.get_num_threads() == 2
    status, _, err = run(capsys, "embed", clip, "--out", tmp_path / "c.npz", "--threads", "0")
    assert status == 1 and "--threads must be >= 1" in err
    torch.set_num_threads(1)


def test_verify_api_with_an_exported_model(models: dict[str, Path], libri: dict[str, list[Path]]) -> None:
    (a1, a2, a3), (b1, _, _) = libri.values()
    onnx = load_model(models["onnx"])
    assert verify([a1, a2], a3, onnx).same_speaker == verify([a1, a2], a3, load_model(models["pt"])).same_speaker
    assert verify([a1, a2], b1, onnx).same_speaker is False

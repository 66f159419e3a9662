"""Export: ONNX and TorchScript files reproduce the PyTorch encoder, int8 quantisation, one-line load errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ge2e.cli import main
from ge2e.config import ModelConfig
from ge2e.errors import CheckpointError
from ge2e.export import (
    PARITY_COSINE,
    InferenceEncoder,
    OnnxEncoder,
    TorchScriptEncoder,
    export,
    fold_projection,
    load_exported,
    quantize_int8,
)
from ge2e.inference import Inference, embed_mels
from ge2e.model import SpeakerEncoder

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy CI machine spinning thread pools slow them down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Tiny versions of the two presets: a projected LSTM ("paper") and LSTM + linear layer ("small"), and a projected
# LSTM reading two stacked frames per step.
CONFIGS = {
    "proj": ModelConfig(hidden_size=24, proj_size=8, num_layers=2),
    "linear": ModelConfig(hidden_size=16, proj_size=0, num_layers=2),
    "stack": ModelConfig(hidden_size=24, proj_size=8, num_layers=2, frame_stack=2),
}


def encoder(kind: str) -> SpeakerEncoder:
    torch.manual_seed(0)
    return SpeakerEncoder(CONFIGS[kind]).eval()


def min_cosine(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).min())


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Every (format, encoder kind) exported once, in float32."""
    out = tmp_path_factory.mktemp("export")
    files = {}
    for fmt in ("onnx", "torchscript"):
        for kind in CONFIGS:
            report = export(encoder(kind), out / f"{kind}.{fmt}", fmt)
            assert report.min_cosine > PARITY_COSINE
            files[fmt, kind] = report.path
    return files


@pytest.fixture(scope="module")
def test_paths(data_root: Path) -> list[Path]:
    """Real test-split audio: the first files of the official LibriSpeech test trial list."""
    lines = (data_root / "trials" / "LibriSpeech.test.txt").read_text().splitlines()
    return [data_root / p for p in sorted({line.split()[1] for line in lines})[:2]]


@pytest.fixture(scope="module")
def test_mels(test_paths: list[Path]) -> list[torch.Tensor]:
    from ge2e.audio import preprocess

    mels = [torch.from_numpy(preprocess(p)) for p in test_paths]
    mels.append(mels[0][:90])  # shorter than one 160-frame window: the exported graph takes any length
    return mels


def test_fold_projection_is_the_same_function():
    model = encoder("proj")
    folded = fold_projection(model)
    assert folded.lstm.proj_size == 0 and folded.lstm.hidden_size == 24
    x = torch.randn(4, 50, 40)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_exported_encoder_matches_pytorch_on_test_audio(exported, test_mels, fmt, kind):
    model = encoder(kind)
    loaded = load_exported(exported[fmt, kind])
    assert isinstance(loaded, OnnxEncoder if fmt == "onnx" else TorchScriptEncoder)
    assert loaded.embedding_size == model.embedding_size and loaded.audio == model.audio
    assert loaded.inference == model.inference
    expected = embed_mels(model, test_mels, model.inference)
    got = embed_mels(loaded, test_mels, loaded.inference)  # duck-typed in place of the SpeakerEncoder
    assert got.shape == expected.shape
    assert min_cosine(got, expected) > PARITY_COSINE


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_dynamic_batch_and_time(exported, fmt):
    model, loaded = encoder("proj"), load_exported(exported[fmt, "proj"])
    for shape in [(1, 7, 40), (5, 160, 40), (2, 333, 40)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            assert min_cosine(loaded(x), model(x)) > PARITY_COSINE


def test_embed_files_with_onnx(exported, test_paths, test_mels):
    model, loaded = encoder("linear"), load_exported(exported["onnx", "linear"], threads=1)
    missing = test_paths[0].with_name("missing.flac")
    result = Inference(loaded).embed_files([test_paths[0], missing], progress=False)
    assert result.embeddings.shape == (1, model.embedding_size)
    assert list(result.errors) == [str(missing)]
    assert min_cosine(result.embeddings, embed_mels(model, test_mels[:1], model.inference)) > PARITY_COSINE


def test_quantize_int8_replaces_float_layers_and_stays_close():
    model = encoder("proj")
    q = quantize_int8(model)
    assert isinstance(q, InferenceEncoder)
    assert type(q.lstm).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert type(q.head).__module__.startswith("torch.ao.nn.quantized.dynamic")
    x = torch.randn(6, 120, 40)
    with torch.no_grad():
        assert min_cosine(q(x), model(x)) > 0.99
    assert embed_mels(q, [x[0]], q.inference).shape == (1, 8)  # no float parameters left: device still found


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_int8_export(exported, tmp_path, fmt):
    model = encoder("linear")
    report = export(model, tmp_path / f"q.{fmt}", fmt, int8=True)
    loaded = load_exported(report.path)
    assert loaded.int8 and not load_exported(exported[fmt, "linear"]).int8
    x = torch.randn(3, 100, 40)
    with torch.no_grad():
        assert min_cosine(loaded(x), model(x)) > 0.98
    assert report.size_bytes < exported[fmt, "linear"].stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == [f"q.{fmt}"]  # no temp files left behind


def test_int8_utterance_dvector_does_not_depend_on_the_other_utterances(tmp_path):
    """Dynamic int8 takes one activation range per batch; embed_mels runs an int8 encoder's utterances alone, so
    an utterance gets the same d-vector embedded alone or among louder ones."""
    loaded = load_exported(export(encoder("linear"), tmp_path / "q.onnx", "onnx", int8=True).path)
    gen = torch.Generator().manual_seed(1)
    mels = [torch.randn(400, 40, generator=gen), 8 * torch.randn(400, 40, generator=gen)]
    together = embed_mels(loaded, mels)
    torch.testing.assert_close(together[0], embed_mels(loaded, mels[:1])[0], atol=0, rtol=0)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.onnx: model file not found"):
        load_exported(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(CheckpointError, match=r"junk\.onnx: cannot load ONNX model"):
        load_exported(junk)
    bare = tmp_path / "bare.onnx"
    torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(bare), dynamo=False)
    with pytest.raises(CheckpointError, match=r"bare\.onnx: ONNX model without ge2e metadata"):
        load_exported(bare)
    script = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), str(script))
    with pytest.raises(CheckpointError, match=r"plain\.pt: TorchScript model without ge2e metadata"):
        load_exported(script)


def test_cli_export(tmp_path, capsys):
    ckpt = tmp_path / "model.pt"
    encoder("linear").save(ckpt)
    out = tmp_path / "enc.onnx"
    assert main(["export", "--format", "onnx", str(ckpt), str(out)]) == 0
    assert "cosine to the PyTorch encoder" in capsys.readouterr().out
    assert load_exported(out).embedding_size == 16
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    assert main(["export", str(bad), str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.pt" in err
    assert not (tmp_path / "x.onnx").exists()

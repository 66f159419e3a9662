"""Feature cache: prepare (bad files, resume, config guard), FeatureCache round trip, the prepare CLI."""

from __future__ import annotations

import pickle
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from ge2e.audio import preprocess
from ge2e.cli import main
from ge2e.config import AudioConfig
from ge2e.data import FeatureCache, PrepareReport, Utterance, prepare, read_corpus
from ge2e.errors import ConfigError, Ge2eError

SENTENCES = {
    "alice/a1.wav": ("en", "The quick brown fox."),
    "alice/a2.wav": ("en", "Speaker verification."),
    "bob/b1.wav": ("en+m3", "She sells sea shells."),
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Inline (workers=0) runs use torch in this process: with the cores shared, 2 intra-op threads spin and
    run ~10x slower than 1 (measured), so these tests use one, as prepare's worker processes do."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, espeak_ng: str) -> Path:
    """3 synthetic speech files (espeak-ng), a corrupt file and an empty file in the generic layout."""
    root = tmp_path_factory.mktemp("corpus")
    for name, (voice, text) in SENTENCES.items():
        (root / name).parent.mkdir(exist_ok=True)
        subprocess.run([espeak_ng, "-v", voice, "-w", str(root / name), text], check=True, capture_output=True)
    (root / "bob" / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    (root / "carol").mkdir()
    (root / "carol" / "empty.flac").touch()
    return root


@pytest.fixture(scope="module")
def expected(corpus: Path) -> dict[str, np.ndarray]:
    """preprocess output of each good file, the reference for the cached float16 features."""
    return {str(corpus / name): preprocess(corpus / name) for name in SENTENCES}


@pytest.fixture(scope="module")
def prepared(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PrepareReport]:
    """The corpus prepared once with 2 worker processes (the pool path), 2 files per shard."""
    out = tmp_path_factory.mktemp("prepared") / "cache"
    return out, prepare(read_corpus(corpus), out, workers=2, shard_size=2, progress=False)


def test_prepare_skips_bad_files_and_round_trips(
    corpus: Path, prepared: tuple[Path, PrepareReport], expected: dict[str, np.ndarray]
) -> None:
    out, report = prepared
    assert report.utterances == 3 and report.new_utterances == 3
    assert sorted(Path(p).name for p, _ in report.skipped) == ["corrupt.wav", "empty.flac"]
    problems = {Path(p).name: problem for p, problem in report.skipped}
    assert "cannot decode" in problems["corrupt.wav"] and problems["empty.flac"] == "empty file (0 bytes)"
    errors = (out / "errors.tsv").read_text().splitlines()
    assert errors[0] == "path\tproblem" and len(errors) == 3
    assert sorted(p.name for p in out.glob("shard-*.npy")) == ["shard-00000.npy", "shard-00001.npy", "shard-00002.npy"]
    assert (out / "shard-00000.tsv").read_text().splitlines()[0].split("\t")[:6] == [
        "path", "speaker", "label", "corpus", "offset", "num_frames"
    ]  # fmt: skip

    cache = FeatureCache(out)
    assert len(cache) == 3 and cache.speaker_keys == [f"{corpus.name}/alice", f"{corpus.name}/bob"]
    assert cache.audio_config == AudioConfig()
    assert report.frames == cache.frames == sum(u.num_frames for u in cache.utterances)
    for i, utt in enumerate(cache.utterances):
        feats = cache.features(i)
        assert feats.dtype == np.float32 and feats.shape == expected[utt.path].shape == (utt.num_frames, 40)
        np.testing.assert_allclose(feats, expected[utt.path], rtol=1e-3, atol=1e-2)  # float16: ~3 digits
    assert cache.select({"bob"}) == [2]
    assert cache.select({f"{corpus.name}/alice"}) == [0, 1]
    assert cache.select(label="yes") == []
    clone = pickle.loads(pickle.dumps(cache))  # DataLoader workers receive the cache pickled
    np.testing.assert_array_equal(clone.features(1), cache.features(1))


def test_resume(
    corpus: Path, prepared: tuple[Path, PrepareReport], expected: dict[str, np.ndarray], tmp_path: Path
) -> None:
    out, manifest = tmp_path / "cache", read_corpus(corpus)
    shutil.copytree(prepared[0], out)
    assert prepared[1].new_shards == 3
    again = prepare(manifest, out, workers=0, shard_size=2, progress=False)
    assert again.new_utterances == 0 and again.new_shards == 0 and again.reused_shards == 3
    assert again.utterances == 3 and len(again.skipped) == 2

    # a run killed while writing shard 1: its .tsv is missing (and a temp file lies around)
    (out / "shard-00001.tsv").unlink()
    (out / "shard-00003.npy.tmp").write_bytes(b"partial")
    resumed = prepare(manifest, out, workers=0, shard_size=2, progress=False)
    assert resumed.reused_shards == 2 and resumed.new_shards == 1
    assert resumed.utterances == 3 and len(resumed.skipped) == 2
    assert not (out / "shard-00001.npy").exists() and not (out / "shard-00003.npy.tmp").exists()
    cache = FeatureCache(out)
    assert sorted(u.path for u in cache.utterances) == sorted(str(corpus / n) for n in SENTENCES)
    for i, utt in enumerate(cache.utterances):
        np.testing.assert_allclose(cache.features(i), expected[utt.path], rtol=1e-3, atol=1e-2)

    # a path already cached is not computed again, whatever the manifest says about it
    extra = Utterance(str(corpus / "alice" / "a1.wav"), "alice", "", "other")
    assert prepare([extra], out, workers=0, progress=False).new_utterances == 0


def test_refuses_other_config_and_foreign_folders(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    manifest = [u for u in read_corpus(corpus) if u.speaker == "bob"]
    prepare(manifest, out, workers=0, progress=False)
    with pytest.raises(ConfigError, match="n_mels"):
        prepare(manifest, out, AudioConfig(n_mels=64), workers=0, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").touch()
    with pytest.raises(Ge2eError, match="not a ge2e feature cache"):
        prepare(manifest, foreign, workers=0, progress=False)
    with pytest.raises(Ge2eError, match="not a ge2e feature cache"):
        FeatureCache(foreign)
    with pytest.raises(Ge2eError, match="not found"):
        FeatureCache(tmp_path / "absent")
    (out / "index.json").write_text('{"format": "something else"}')
    with pytest.raises(Ge2eError, match="not a ge2e feature cache"):
        FeatureCache(out)


def test_augmented_copies(corpus: Path, tmp_path: Path) -> None:
    manifest = [u for u in read_corpus(corpus) if u.path.endswith("b1.wav")]
    report = prepare(manifest, tmp_path / "c", workers=0, progress=False, augment=["speed", "noise", "reverb"])
    assert report.utterances == 5
    cache = FeatureCache(tmp_path / "c")
    by_variant = {u.augment: u for u in cache.utterances}
    assert set(by_variant) == {"", "speed0.9", "speed1.1", "noise", "reverb"}
    assert by_variant["speed0.9"].speaker == "bob_sp0.9" and by_variant["noise"].speaker == "bob"
    assert by_variant["speed0.9"].num_frames > by_variant[""].num_frames > by_variant["speed1.1"].num_frames
    assert len(cache.select({"bob"})) == 5  # speed copies follow their source speaker
    assert len(cache.select({"bob"}, augmented=False)) == 1
    # deterministic: a second cache holds the same augmented features
    prepare(manifest, tmp_path / "d", workers=0, progress=False, augment="noise")
    other = FeatureCache(tmp_path / "d")
    noisy = next(i for i, u in enumerate(cache.utterances) if u.augment == "noise")
    np.testing.assert_array_equal(other.features(other.select()[1]), cache.features(noisy))


def test_cli(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cache"
    manifest = [u for u in read_corpus(corpus) if u.speaker != "alice"]
    prepare(manifest, out, workers=0, progress=False)  # the CLI then only adds alice's 2 files
    assert main(["prepare", str(corpus), "--out", str(out), "--workers", "0", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "3 utterances cached (2 new" in text and "skipped 2 file(s)" in text and "cannot decode audio" in text
    assert main(["prepare", str(corpus), "--out", str(out), "--workers", "0", "--speakers", "nobody"]) == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x").mkdir()
    (bad / "x" / "empty.wav").touch()
    assert main(["prepare", str(bad), "--out", str(tmp_path / "c2"), "--workers", "0", "--no-progress"]) == 1


def test_real_librispeech(data_root: Path, tmp_path: Path) -> None:
    manifest = read_corpus(data_root / "LibriSpeech" / "test-other")[:2]
    report = prepare(manifest, tmp_path / "c", workers=0, progress=False)
    assert report.utterances == 2 and not report.skipped and report.hours > 0
    cache = FeatureCache(tmp_path / "c")
    assert {u.corpus for u in cache.utterances} == {"LibriSpeech"}
    np.testing.assert_allclose(cache.features(0), preprocess(manifest[0].path), rtol=1e-3, atol=1e-2)

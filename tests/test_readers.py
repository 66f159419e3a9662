"""Corpus readers: layouts, auto-detection and split files, on fake trees of empty files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ge2e import decoding
from ge2e.data.readers import Utterance, detect_layout, list_audio, load_split, read_corpus
from ge2e.errors import Ge2eError


def make_tree(root: Path, names: list[str]) -> Path:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return root


LIBRI = [
    "train-clean-100/103/1240/103-1240-0000.flac",
    "train-clean-100/103/1240/103-1240-0001.flac",
    "test-other/1688/142285/1688-142285-0000.flac",
    "LICENSE.txt",
]
VOX = ["id10001/1zcIwhmdeo4/00001.wav", "id10001/7gWzIy6yIIk/00002.m4a", "id10002/abc/00001.m4a"]
SC = [
    "yes/022cd682_nohash_0.opus",
    "yes/03401e93_nohash_1.opus",
    "no/022cd682_nohash_0.opus",
    "_background_noise_/white_noise.wav",
    "README.md",
]
DSP = ["15307110189/15307110189-00-01.opus", "15307110189/15307110189-13-20.opus", "163/163-05-01.opus"]
FSDD = ["recordings/0_jackson_0.wav", "recordings/9_theo_49.wav"]
GENERIC = ["alice/a.wav", "alice/session1/b.flac", "bob/c.ogg", "notes.txt"]


def test_librispeech(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "LibriSpeech", LIBRI)
    utts = read_corpus(root)
    assert [(u.speaker, u.label, u.corpus) for u in utts] == [
        ("1688", "", "LibriSpeech"),
        ("103", "", "LibriSpeech"),
        ("103", "", "LibriSpeech"),
    ]
    assert utts[0].path == str(root / LIBRI[2])
    # a subset folder alone is read the same way, with the same corpus name
    assert {u.key for u in read_corpus(root / "train-clean-100")} == {"LibriSpeech/103"}


def test_voxceleb_needs_ffmpeg_for_m4a(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path / "vox1", VOX)
    monkeypatch.setattr(decoding.shutil, "which", lambda name: None)
    with pytest.raises(Ge2eError, match="ffmpeg"):
        read_corpus(root)
    monkeypatch.setattr(decoding.shutil, "which", lambda name: "/usr/bin/ffmpeg")
    utts = read_corpus(root)
    assert [u.speaker for u in utts] == ["id10001", "id10001", "id10002"]
    assert {u.corpus for u in utts} == {"vox1"}


def test_speech_commands(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "speech_commands_v0.02_test", SC)
    utts = read_corpus(root)
    assert [(u.speaker, u.label) for u in utts] == [("022cd682", "no"), ("022cd682", "yes"), ("03401e93", "yes")]
    assert utts[0].key == "speech_commands_v0.02_test/022cd682"


def test_dspspeech(tmp_path: Path) -> None:
    utts = read_corpus(make_tree(tmp_path / "dsp", DSP))
    assert [(u.speaker, u.label, u.corpus) for u in utts] == [
        ("15307110189", "00", "DSPSpeech-20"),
        ("15307110189", "13", "DSPSpeech-20"),
        ("163", "05", "DSPSpeech-20"),
    ]


def test_fsdd(tmp_path: Path) -> None:
    utts = read_corpus(make_tree(tmp_path / "fsdd", FSDD), corpus="FSDD")
    assert [(u.speaker, u.label, u.corpus) for u in utts] == [("jackson", "0", "FSDD"), ("theo", "9", "FSDD")]


def test_generic_and_corpus_name(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "mine", GENERIC)
    utts = read_corpus(root)
    assert [u.speaker for u in utts] == ["alice", "alice", "bob"]
    assert {u.corpus for u in utts} == {"mine"}
    assert read_corpus(root, "generic", corpus="X")[0] == Utterance(str(root / "alice/a.wav"), "alice", "", "X")


@pytest.mark.parametrize(
    ("names", "layout"),
    [
        (LIBRI, "librispeech"),
        (VOX[:1], "voxceleb"),
        (SC, "speech_commands"),
        (DSP, "dspspeech"),
        (FSDD, "fsdd"),
        (GENERIC, "generic"),
    ],
)
def test_detect_layout(tmp_path: Path, names: list[str], layout: str) -> None:
    assert detect_layout(list_audio(make_tree(tmp_path / "c", names))).name == layout


def test_explicit_layout_skips_misfits(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "dsp", [*DSP, "15307110189/stray.wav"])
    assert read_corpus(root, "generic")[0].speaker == "15307110189"  # generic accepts everything
    assert len(read_corpus(root, "dspspeech")) == 3  # the stray file is skipped, not an error


def test_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(Ge2eError, match="not found"):
        read_corpus(tmp_path / "absent")
    with pytest.raises(Ge2eError, match="no audio"):
        read_corpus(make_tree(tmp_path / "empty", ["a.txt"]))
    with pytest.raises(Ge2eError, match="cannot detect"):
        read_corpus(make_tree(tmp_path / "flat", ["a.wav", "b.wav"]))
    with pytest.raises(Ge2eError, match="unknown layout"):
        read_corpus(make_tree(tmp_path / "g", GENERIC), "timit")


def test_load_split(tmp_path: Path) -> None:
    make_tree(tmp_path, [])
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "DSPSpeech-20.dev.txt").write_text("163\n# comment\n\n15307110189  \n")
    assert load_split(tmp_path, "DSPSpeech-20", "dev") == {"163", "15307110189"}
    with pytest.raises(Ge2eError, match="cannot read"):
        load_split(tmp_path, "DSPSpeech-20", "test")
    with pytest.raises(Ge2eError, match="unknown split"):
        load_split(tmp_path, "DSPSpeech-20", "eval")


def test_real_corpora(data_root: Path) -> None:
    utts = read_corpus(data_root / "DSPSpeech-20")
    assert len(utts) == 13_599 and {u.corpus for u in utts} == {"DSPSpeech-20"}
    speakers = {u.speaker for u in utts}
    for split in ("train", "dev", "test"):
        assert load_split(data_root, "DSPSpeech-20", split) <= speakers
    libri = read_corpus(data_root / "LibriSpeech")
    assert len(libri) == 351 and len({u.key for u in libri}) == 261
    sc = read_corpus(data_root / "speech_commands_v0.02_test")
    assert len(sc) == 3_749 and len({u.label for u in sc}) == 35

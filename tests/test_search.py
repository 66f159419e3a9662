"""Speaker search (ge2e.diarization.search, ``ge2e search``, ``ge2e.search``): regions from scored segments, real
speech of two LibriSpeech speakers, the CLI's RTTM and errors, the calibrated threshold."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import ge2e
from conversation import build, overlap
from ge2e.cli import main
from ge2e.diarization import read_rttm
from ge2e.diarization.search import UNTUNED_THRESHOLD, Region, find_regions, search_threshold
from ge2e.pretrained import bundled_model_path, read_tuning


def test_regions_are_the_segments_at_or_above_the_threshold_touching_ones_merged() -> None:
    segments = [
        Region(0.0, 1.0, 0.9),
        Region(1.0, 3.0, 0.6),  # touches the first: merged, score weighted by seconds
        Region(3.5, 4.0, 0.5),  # at the threshold, after a pause: a region of its own
        Region(4.0, 5.0, 0.49),  # under it
        Region(5.0, 6.0, 0.7),  # its neighbour is not found, so it stays apart
    ]
    found = find_regions(segments, 0.5)
    assert [(r.start, r.end) for r in found] == [(0.0, 3.0), (3.5, 4.0), (5.0, 6.0)]
    assert found[0].score == pytest.approx((0.9 * 1 + 0.6 * 2) / 3)
    assert found[1].score == pytest.approx(0.5)
    assert find_regions(segments, 0.95) == []


@pytest.fixture(scope="module")
def meeting(data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    return build(data_root, tmp_path_factory.mktemp("search"))


@pytest.fixture(scope="module")
def model():
    return ge2e.load_model()


def test_search_finds_each_speaker_in_a_real_conversation(meeting, model) -> None:
    enroll, wav, turns = meeting
    for name in enroll:
        found = ge2e.search(enroll[name], wav, model)
        inside, outside = overlap([(r.start, r.end) for r in found.regions], turns, name)
        speech = sum(e - s for who, s, e in turns if who == name)
        assert inside > 0.7 * speech and outside < 0.05 * speech, (name, inside, outside, speech)  # turns hold pauses
        assert all(r.score >= found.threshold for r in found.regions)
        assert len(found.segments) >= len(found.regions)
    # an enrollment d-vector searches the same way as the files it came from
    vector = ge2e.embed_speaker(enroll["bob"], model)
    assert ge2e.search(vector, wav, model).regions == ge2e.search(enroll["bob"], wav, model).regions


def test_the_bundled_model_has_a_calibrated_search_threshold(model, caplog: pytest.LogCaptureFixture) -> None:
    record = read_tuning(bundled_model_path())
    assert search_threshold(model) == pytest.approx(record["search_threshold"])
    assert search_threshold(model) != UNTUNED_THRESHOLD

    class Other:
        diarization = None

    with caplog.at_level(logging.WARNING):
        assert search_threshold(Other()) == UNTUNED_THRESHOLD
    assert "no search threshold" in caplog.text


def test_cli_writes_the_regions_as_rttm_and_json(meeting, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    enroll, wav, _ = meeting
    out = tmp_path / "new" / "alice.rttm"
    status = main(
        [
            "search",
            "--enroll",
            *map(str, enroll["alice"]),
            "--in",
            str(wav),
            "--out",
            str(out),
            "--json",
            "--name",
            "alice",
            "--mkdir",
            "--plot",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0
    document = json.loads(captured.out)
    rttm = read_rttm(out)["meeting"]
    assert [(s.start, s.end, s.speaker) for s in rttm] == [
        (pytest.approx(r["start"], abs=1e-3), pytest.approx(r["end"], abs=1e-3), "alice") for r in document["regions"]
    ]
    expected = ge2e.search(enroll["alice"], wav)
    assert [(r["start"], r["end"]) for r in document["regions"]] == [(r.start, r.end) for r in expected.regions]
    assert out.with_suffix(".png").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--enroll", "missing.wav"], "missing.wav: file not found"),
        (["--threshold", "2"], "--threshold must be a cosine score in [-1, 1]"),
        (["--out", "no/such/folder/x.rttm"], "no/such/folder"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_1(meeting, tmp_path: Path, capsys, monkeypatch, args, problem) -> None:
    enroll, wav, _ = meeting
    monkeypatch.chdir(tmp_path)
    given = {"--enroll": [str(enroll["alice"][0])], "--in": [str(wav)], "--out": ["x.rttm"]}
    for i in range(0, len(args), 2):
        given[args[i]] = [args[i + 1]]
    status = main(["search", *[a for k, v in given.items() for a in (k, *v)]])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1 and problem in err[0] and "Traceback" not in err[0], err
    assert not Path("x.rttm").exists()

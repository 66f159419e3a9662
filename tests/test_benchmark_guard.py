"""The benchmarks' guard against flattering numbers (issue 36): a run is quiet only when the 1-minute load left
at most half a core per thread in use to other work all along (the run's own threads count in the load), and
embed.py writes no results from a busy run unless told to, and then marks them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import common  # noqa: E402


def test_quiet_means_half_a_core_per_thread_all_along() -> None:
    assert common.quiet([0.2, 1.5, 0.8], threads=1)  # the run itself plus half a core of others
    assert not common.quiet([0.2, 1.51, 0.1], threads=1)  # one busy moment is enough
    assert common.quiet([2.9, 3.0], threads=2) and not common.quiet([3.1], threads=2)


def test_results_go_to_the_file_named(tmp_path: Path) -> None:
    assert common.write_result(str(tmp_path / "run.json"), {"a": 1}) == tmp_path / "run.json"
    assert (tmp_path / "run.json").read_text() == '{\n  "a": 1\n}\n'
    with pytest.raises(SystemExit, match="its folder does not exist"):
        common.write_result(str(tmp_path / "missing" / "run.json"), {})


def test_interleaved_records_the_load_before_and_after_each_round(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([0.1, 0.2, 0.3, 0.4])
    monkeypatch.setattr(common, "load_average", lambda: next(readings))
    calls: list[str] = []
    loads: list[float] = []
    times = common.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, 1, loads)
    assert loads == [0.1, 0.2, 0.3, 0.4] and {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then rotating order


def test_embed_refuses_to_write_a_busy_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    import embed

    written = []
    monkeypatch.setattr(embed, "split_files", lambda data, split, n: [tmp_path / "a.flac"])
    monkeypatch.setattr(embed.sf, "info", lambda f: type("Info", (), {"duration": 2.0})())
    monkeypatch.setattr(
        embed, "contenders", lambda files, tmp, only=None: {"resemblyzer": lambda: None, "ours": lambda: None}
    )
    monkeypatch.setattr(embed, "in_own_process", lambda args, name, threads: {"times_s": [0.5], "loads": [3.0]})
    monkeypatch.setattr(embed, "write_result", lambda name, data: written.append(data) or tmp_path / "r.json")
    monkeypatch.setattr(common, "load_average", lambda: 3.0)
    monkeypatch.setattr(sys, "argv", ["embed.py", "--threads", "1", "--repeats", "1"])
    assert embed.main() == 1 and written == []
    assert "NOT QUIET" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["embed.py", "--threads", "1", "--repeats", "1", "--allow-busy"])
    assert embed.main() == 0 and written[-1]["quiet"] is False
    monkeypatch.setattr(common, "load_average", lambda: 1.3)
    monkeypatch.setattr(embed, "in_own_process", lambda args, name, threads: {"times_s": [0.5], "loads": [1.3]})
    monkeypatch.setattr(sys, "argv", ["embed.py", "--threads", "1", "--repeats", "1"])
    assert embed.main() == 0 and written[-1]["quiet"] is True

"""A hostile-but-fair corpus, generated here: FIFOs, link loops, dangling links, empty, truncated and bit-flipped
files, odd rates, channels and bit depths, names with newlines; read-only and full output folders; kills.

Every bad input gets one line naming it and its problem and the batch goes on; no input hangs a command, no
traceback reaches the user, and no worker process outlives a killed ``ge2e prepare``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ge2e.audio import load_audio
from ge2e.cli import main
from ge2e.config import AudioConfig, ModelConfig
from ge2e.errors import AudioError
from ge2e.model import SpeakerEncoder

SR = 16_000
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def noise(seconds: float, sr: int = SR, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (round(seconds * sr), channels) if channels > 1 else round(seconds * sr)
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)


def ge2e(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m ge2e ARGS`` in a fresh process; the timeout turns a hang into a failure."""
    cmd = [sys.executable, "-m", "ge2e", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)


def no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def dead_pid() -> int:
    """The id of a process that has ended (for temp files of a "killed" writer)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------------------------- the corpus

# file name -> the problem its one line must give
BAD = {
    "fifo.wav": "not a regular file (a FIFO)",
    "loop.wav": "symbolic link loop",
    "dangling.wav": "dangling symbolic link",
    "empty.wav": "empty file (0 bytes)",
    "cut_header.wav": "cannot decode audio",
    "flipped_magic.flac": "cannot decode audio",
    "nan.wav": "NaN or infinite samples",
    "silent.wav": "silent audio",
    "short.wav": "ms of audio, need 250 ms",
    "new\nline.wav": "cannot decode audio",
}
# under the 250 ms training data needs (preprocess' default), but speech all the same: embed and verify score it
SHORT = "short.wav"
# usable, but odd: each must be embedded
ODD = ("rate8k_a.wav", "rate8k_b.wav", "huge_stereo.wav", "truncated.wav", "six_ch_24bit_44k.wav", "u8_11k.wav")


def make_corpus(root: Path) -> Path:
    """``root/in``: good clips, the :data:`BAD` files and the :data:`ODD` ones."""
    folder = root / "in"
    folder.mkdir()
    for k in range(2):
        sf.write(folder / f"good{k}.wav", noise(1.0, seed=k), SR)
    os.mkfifo(folder / "fifo.wav")
    os.symlink("loop.wav", folder / "loop.wav")
    os.symlink("missing.wav", folder / "dangling.wav")
    (folder / "empty.wav").touch()
    whole = folder / "good0.wav"
    (folder / "cut_header.wav").write_bytes(whole.read_bytes()[:30])
    sf.write(folder / "flipped_magic.flac", noise(1.0), SR)
    data = bytearray((folder / "flipped_magic.flac").read_bytes())
    data[0] ^= 0xFF  # "fLaC" no more
    (folder / "flipped_magic.flac").write_bytes(bytes(data))
    nan = noise(1.0)
    nan[100] = np.nan
    sf.write(folder / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(folder / "silent.wav", np.zeros(SR, dtype=np.float32), SR)
    sf.write(folder / "short.wav", noise(0.1), SR)
    (folder / "new\nline.wav").write_bytes(b"RIFF\x00\x00garbage" * 4)
    sf.write(folder / "rate8k_a.wav", noise(1.0, 8_000), 8_000)
    sf.write(folder / "rate8k_b.wav", noise(1.0, 8_000, seed=1), 8_000)
    huge = np.clip(10 * noise(1.0, channels=2), -1, 1) * np.float32(3e38)  # finite; float32 sums overflow
    sf.write(folder / "huge_stereo.wav", huge, SR, subtype="FLOAT")
    sf.write(folder / "six_ch_24bit_44k.wav", noise(1.0, 44_100, channels=6), 44_100, subtype="PCM_24")
    sf.write(folder / "u8_11k.wav", noise(1.0, 11_025), 11_025, subtype="PCM_U8")
    full = (folder / "good1.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(full[: len(full) // 2])  # the header still promises all of it
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model without VAD: noise clips count as speech, and nothing here waits on silero."""
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    SpeakerEncoder(ModelConfig(hidden_size=16, proj_size=0, num_layers=1), AudioConfig(vad=False)).save(path)
    return path


# ------------------------------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_input_is_one_line_naming_it(corpus: Path, name: str) -> None:
    from ge2e.audio import preprocess

    with pytest.raises(AudioError) as caught:
        preprocess(corpus / name, cfg=AudioConfig(vad=False))
    message = str(caught.value)
    assert BAD[name] in message and len(message.splitlines()) == 1
    assert message.startswith(str(corpus / name).replace("\n", "\\n") + ": ")


def test_embed_skips_every_bad_input_once_and_embeds_the_rest(corpus: Path, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb.npz"
    result = ge2e("embed", corpus, corpus / "fifo.wav", "/dev/null", "--out", out, "--model", model,
                  "--no-progress", timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "RuntimeWarning" not in result.stderr, result.stderr
    listed = result.stdout.splitlines()
    skipped = {name: problem for name, problem in BAD.items() if name != SHORT}
    for name, problem in skipped.items():
        shown = str(corpus / name).replace("\n", "\\n")
        lines = [line for line in listed if line.strip().startswith(shown + ":")]
        assert len(lines) >= 1 and all(problem in line for line in lines), (name, result.stdout)
        assert shown not in result.stderr, f"{name} reported twice (stdout and stderr)"
    assert any("/dev/null: not a regular file (a character device)" in line for line in listed)
    assert result.stderr.count("narrowband audio (8000 Hz)") == 1, result.stderr
    assert "truncated.wav: truncated file" in result.stderr, result.stderr
    with np.load(out) as npz:
        embedded = {Path(p).name for p in npz["paths"]}
        assert np.isfinite(npz["embeddings"]).all()
    assert embedded == {"good0.wav", "good1.wav", SHORT, *ODD}


def test_channels_are_averaged_without_overflow(corpus: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning (overflow) fails the test
        wav = load_audio(corpus / "huge_stereo.wav")
    assert np.isfinite(wav).all() and np.abs(wav).max() > 1e37


def test_a_loop_named_on_the_command_line_is_skipped_not_fatal(
    corpus: Path, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "emb.npz"
    status = main(["embed", str(corpus / "loop.wav"), str(corpus / "good0.wav"), "--out", str(out),
                   "--model", str(model), "--no-progress"])  # fmt: skip
    stdout = capsys.readouterr().out
    assert status == 0 and "loop.wav: symbolic link loop" in stdout
    with np.load(out) as npz:
        assert [Path(p).name for p in npz["paths"]] == ["good0.wav"]


def test_unreadable_file_is_permission_denied(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads any file, so the refusal is mocked at the one place the front end opens a path."""
    real_open = os.open

    def refuse(path: object, *args: object, **kwargs: object) -> int:
        if str(path).endswith("good0.wav"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(AudioError, match=r"good0\.wav: cannot open \(permission denied\)$"):
        load_audio(corpus / "good0.wav")


# ------------------------------------------------------------------------------------------------ outputs


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str, read_only: bool = False) -> Iterator[Path | None]:
    """A tmpfs of ``size`` mounted on ``where``, or None where this process may not mount one."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def read_only_folder(tmp_path: Path, stack: contextlib.ExitStack) -> Path | None:
    """A folder this process cannot write: a read-only tmpfs, or for a non-root user a mode-0555 folder."""
    mounted = stack.enter_context(small_tmpfs(tmp_path / "ro", "1m", read_only=True))
    if mounted is not None:
        return mounted
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.chmod(0o555)
        stack.callback(folder.chmod, 0o755)
        return folder
    return None


def test_embed_to_a_read_only_folder_fails_at_once(corpus: Path, model: Path, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        folder = read_only_folder(tmp_path, stack)
        if folder is None:
            pytest.skip("cannot make a read-only folder here (root without mount); see the mocked test below")
        # the model file does not exist: only a command that checks its output first reports the folder
        missing_model = model.with_name("not-loaded-yet.pt")
        result = ge2e("embed", corpus / "good0.wav", "--out", folder / "x.npz", "--model", missing_model, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert f"{folder / 'x.npz'}: cannot write (" in lines[0] and "Traceback" not in result.stderr


def test_write_failure_is_one_line_and_leaves_no_temp_file(corpus: Path, model: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A disk that fills up during the write (mocked: the space check passed, the write then fails)."""
    monkeypatch.setattr(np, "savez", no_space)
    out = tmp_path / "out" / "x.npz"
    args = ["embed", str(corpus / "good0.wav"), "--out", str(out), "--model", str(model), "--no-progress", "--mkdir"]
    status = main(args)
    err = capsys.readouterr().err
    assert status == 1 and err.strip() == f"ge2e embed: error: {out}: cannot write (no space left on device)"
    assert list(out.parent.iterdir()) == []


def test_prepare_on_a_full_disk_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    speakers = tmp_path / "corpus"
    for k in range(2):
        (speakers / f"spk{k}").mkdir(parents=True)
        sf.write(speakers / f"spk{k}" / "a.wav", noise(1.0, seed=k), SR)
    with small_tmpfs(tmp_path / "small", "16k") as mounted:
        if mounted is None:  # no tmpfs: the shard write fails as it would on a full disk
            mounted = tmp_path / "small"
            monkeypatch.setattr(np, "save", no_space)
        config = tmp_path / "audio.yaml"
        config.write_text("audio:\n  vad: false\n")
        sf.write(speakers / "spk0" / "b.wav", noise(8.0), SR)  # ~80 KB of features: more than 16 KB holds
        status = main(["prepare", str(speakers), "--out", str(mounted / "cache"), "--workers", "0",
                       "--config", str(config), "--no-progress"])  # fmt: skip
        err = capsys.readouterr().err
        leftovers = [p.name for p in (mounted / "cache").iterdir() if p.name.endswith(".tmp")]
    assert status == 1 and len(err.strip().splitlines()) == 1, err
    assert "cannot write (no space left on device)" in err and "shard-00000.npy" in err
    assert leftovers == []


def test_stale_temp_files_of_killed_runs_are_removed(corpus: Path, model: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "x.npz"
    stale = tmp_path / f".x.npz.ge2e-{dead_pid()}-abc123.tmp"
    live = tmp_path / f".x.npz.ge2e-{os.getpid()}-def456.tmp"  # a writer still running: left alone
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    assert main(["embed", str(corpus / "good0.wav"), "--out", str(out), "--model", str(model), "--no-progress"]) == 0
    assert not stale.exists() and live.exists() and out.is_file()


# ---------------------------------------------------------------------------------------------- processes


def children(pid: int, marker: bytes = b"") -> list[int]:
    """Ids of the live (not zombie) processes whose parent is ``pid`` and whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z" and marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_no_worker_outlives_a_killed_prepare(tmp_path: Path, signum: int) -> None:
    root = tmp_path / "corpus"
    for k in range(4):
        (root / f"spk{k}").mkdir(parents=True)
        # enough work that the run is still going when it is killed, however loaded the machine: a run that has
        # finished meanwhile may take the signal during interpreter shutdown, when Python has already put back the
        # default handlers, and die of it (exit -15) instead of exiting 143
        for u in range(100):
            sf.write(root / f"spk{k}" / f"{u}.wav", noise(2.0, seed=100 * k + u), SR)
    cmd = [sys.executable, "-m", "ge2e", "prepare", str(root), "--out", str(tmp_path / "cache"), "--workers", "2",
           "--shard-size", "4", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while len(children(proc.pid, b"spawn_main")) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(children(proc.pid, b"spawn_main")) == 2, "prepare started no pool of 2 workers"
        while not (tmp_path / "cache" / "shard-00000.tsv").exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # workers at work: past their start-up (the spawn start imports ge2e for seconds)
        workers = children(proc.pid)  # the workers and multiprocessing's resource tracker
        assert proc.poll() is None, "prepare finished before it could be killed: give it more work"
        proc.send_signal(signum)
        proc.wait(timeout=30)
        end = time.monotonic() + 5.0
        while any(alive(w) for w in workers) and time.monotonic() < end:
            time.sleep(0.1)
        survivors = [w for w in workers if alive(w)]
        assert survivors == [], f"processes of the killed prepare still alive 5 s later: {survivors}"
        if signum == signal.SIGTERM:
            assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in proc.stderr.read()
    finally:
        for pid in [proc.pid, *workers]:  # only what this test started
            with contextlib.suppress(ProcessLookupError):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_prepare_into_a_read_only_folder_is_one_line(corpus: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    with contextlib.ExitStack() as stack:
        folder = read_only_folder(tmp_path, stack)
        if folder is None:
            pytest.skip("cannot make a read-only folder here (root without mount)")
        status = main(["prepare", str(corpus), "--layout", "generic", "--out", str(folder / "cache"), "--no-progress"])
        err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1, err
    assert f"{folder / 'cache'}: cannot write (" in err


# ------------------------------------------------------------------------------------ optional packages


@pytest.mark.parametrize(
    ("missing", "command", "message"),
    [
        ("umap", ["plot", "{data}", "--method", "umap"], "--method umap needs umap-learn"),
        ("matplotlib", ["plot", "{data}"], "plots need matplotlib"),
        ("matplotlib", ["similarity", "{data}"], "plots need matplotlib"),
    ],
)
def test_missing_optional_package_is_reported_before_any_work(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    missing: str, command: list[str], message: str,
) -> None:  # fmt: skip
    import importlib.util

    import ge2e.inference

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("embedding started before the missing package was noticed")

    monkeypatch.setattr(ge2e.inference.Inference, "embed_files", no_work)
    data = tmp_path / "data" / "spk0"
    data.mkdir(parents=True)
    sf.write(data / "a.wav", noise(1.0), SR)
    argv = [a.format(data=data.parent) for a in command] + ["--out", str(tmp_path / "x.png")]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 1 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", ["eval", "diarize", "export"])
def test_unwritable_output_is_refused_before_the_model_is_loaded(
    command: str,
    corpus: Path,
    model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An output under a regular file cannot be created: one line, before any model or audio is touched."""

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the output was checked")

    for where in ("ge2e.cli.eval.open_model", "ge2e.cli.diarize.open_model", "ge2e.pretrained.load_model"):
        monkeypatch.setattr(where, no_model)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    trials = tmp_path / "trials.txt"
    trials.write_text(f"1 {corpus / 'good0.wav'} {corpus / 'good0.wav'}\n")
    argv = {
        "eval": ["eval", "--trials", str(trials), "--out", str(out)],
        "diarize": ["diarize", str(corpus / "good0.wav"), "--out", str(out / "x.rttm")],
        "export": ["export", str(model), str(out / "x.onnx")],
    }[command]
    status = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1, err
    assert f"ge2e {command}: error: " in err[0] and "cannot write" in err[0] and str(blocker) in err[0]

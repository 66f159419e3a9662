"""Training on real speech: the loss falls, validation uses unseen speakers, SIGKILL + resume is exact, DDP."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from ge2e.config import (
    OptimConfig,
    SourceConfig,
    TrainConfig,
    save_config,
)
from ge2e.data.cache import FeatureCache
from ge2e.data.prepare import prepare
from ge2e.data.readers import read_corpus
from ge2e.data.sampler import BatchDataset, SpeakerPool
from ge2e.inference import embed_mels
from ge2e.model import SpeakerEncoder
from ge2e.train import train
from synthetic import tiny_train_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def small_cache(data_root, tmp_path_factory) -> tuple[Path, Path, Path]:
    """Features of 8 DSPSpeech-20 train speakers (12 files each) and 3 dev speakers (6 files each)."""
    root = tmp_path_factory.mktemp("cache")
    splits = {s: (data_root / "splits" / f"DSPSpeech-20.{s}.txt").read_text().split() for s in ("train", "dev")}
    manifest = read_corpus(data_root / "DSPSpeech-20", layout="dspspeech")
    chosen = []
    for split, count, per in (("train", 8, 12), ("dev", 3, 6)):
        for speaker in sorted(splits[split])[:count]:
            chosen += [u for u in manifest if u.speaker == speaker][:per]
    prepare(chosen, root / "feats", workers=2, progress=False)
    lists = []
    for split, count in (("train", 8), ("dev", 3)):
        path = root / f"{split}.txt"
        path.write_text("\n".join(f"DSPSpeech-20/{s}" for s in sorted(splits[split])[:count]))
        lists.append(path)
    return root / "feats", lists[0], lists[1]


def tiny_config(cache: Path, train_list: Path, dev_list: Path, out: Path, **changes) -> TrainConfig:
    sources = [SourceConfig(cache=str(cache), splits=[str(train_list)])]
    val_sources = [SourceConfig(cache=str(cache), splits=[str(dev_list)])]
    defaults = {"optim": OptimConfig(name="adam", lr=0.01), "checkpoint_every": 5, "seed": 3}
    return tiny_train_config(out, sources, val_sources, trials=200, **{**defaults, **changes})


def read_losses(out: Path) -> dict[int, float]:
    with (out / "metrics.csv").open() as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}


def test_batches_are_n_by_m_with_one_crop_length(small_cache):
    cfg = tiny_config(*small_cache, Path("unused"))
    pool = SpeakerPool.from_source(cfg.data.sources[0], 2)
    assert len(pool) == 8
    dataset = BatchDataset([pool], cfg.data, seed=0)
    (batch,) = dataset[7]
    n, m, t, mels = batch.shape
    assert (n, m, mels) == (4, 4, 40) and 40 <= t <= 60
    torch.testing.assert_close(dataset[7][0], batch)  # a pure function of the step
    assert not torch.equal(BatchDataset([pool], cfg.data, seed=1)[7][0], batch)


def test_short_training_lowers_loss_and_validates_on_unseen_speakers(small_cache, tmp_path):
    cache, train_list, dev_list = small_cache
    train_speakers = set(train_list.read_text().split())
    dev_speakers = set(dev_list.read_text().split())
    assert not train_speakers & dev_speakers
    feats = FeatureCache(cache)
    cfg = tiny_config(*small_cache, tmp_path)
    pool = SpeakerPool.from_source(cfg.val.sources[0], 2)
    assert set(pool.speakers) == dev_speakers
    train(cfg, progress=False)
    losses = list(read_losses(tmp_path).values())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    with (tmp_path / "metrics.csv").open() as f:
        val = [float(r["val_eer"]) for r in csv.DictReader(f) if r.get("val_eer")]
    assert len(val) == 4 and val[-1] < 0.5, val  # below chance on speakers it never saw
    model = SpeakerEncoder.load(tmp_path / "model.pt")
    assert embed_mels(model, [feats.features(0)])[0].numpy().shape == (32,)
    # best.pt is the checkpoint of the lowest validation EER, and says so
    assert SpeakerEncoder.load(tmp_path / "best.pt").meta["val_eer"] == min(val)
    assert (tmp_path / "config.yaml").exists()


def _launch(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ge2e", "train", str(config), "--no-progress", *extra],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_and_resume_reproduce_uninterrupted_losses(small_cache, tmp_path):
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    config = tmp_path / "cfg.yaml"
    save_config(tiny_config(*small_cache, killed_dir, steps=100_000, checkpoint_every=5), config)
    proc = _launch(config)
    deadline = time.time() + 120
    while not (killed_dir / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    resumed_at = torch.load(killed_dir / "last.pt", weights_only=False)["step"]
    end = resumed_at + 8
    resumed = _launch(config, "--set", f"steps={end}")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    save_config(tiny_config(*small_cache, reference_dir, steps=end), config)
    reference = _launch(config)
    assert reference.wait(timeout=300) == 0, reference.stderr.read().decode()
    got, expected = read_losses(killed_dir), read_losses(reference_dir)
    assert sorted(got) == list(range(1, end + 1))
    for step in range(resumed_at + 1, end + 1):
        assert got[step] == expected[step], f"step {step}: {got[step]} != {expected[step]}"
    a = SpeakerEncoder.load(killed_dir / "model.pt").state_dict()
    b = SpeakerEncoder.load(reference_dir / "model.pt").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_ddp_two_processes_on_cpu_agree(small_cache, tmp_path):
    cfg = tiny_config(*small_cache, tmp_path / "ddp", steps=6, checkpoint_every=3)
    config = tmp_path / "ddp.yaml"
    save_config(cfg, config)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    cmd += [str(REPO / "tests" / "ddp_worker.py"), str(config), str(tmp_path)]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0)
    initial = SpeakerEncoder(cfg.model).state_dict()
    assert any(not torch.equal(initial[k], rank0[f"encoder.{k}"]) for k in initial)
    assert yaml.safe_load((tmp_path / "ddp" / "config.yaml").read_text())["steps"] == 6


def test_cpu_budget_stops_the_run_and_carries_across_resumes(small_cache, tmp_path):
    """``cpu_budget_s`` ends a run by CPU time (logged per step), and a resumed run does not train past it."""
    cfg = tiny_config(*small_cache, tmp_path, steps=1000, cpu_budget_s=2.0, checkpoint_every=1000)
    train(cfg, progress=False)
    with (tmp_path / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    cpu = [float(r["cpu_time"]) for r in rows]
    assert 2 < len(rows) < 1000 and cpu == sorted(cpu)
    assert cpu[-1] >= 2.0 > cpu[-2], "the run stops at the first step that reaches the budget"
    assert rows[-1]["val_eer"], "the last step is validated"
    model = SpeakerEncoder.load(tmp_path / "model.pt")
    assert model.meta["step"] == len(rows) and model.meta["cpu_time"] == pytest.approx(cpu[-1])
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert state["step"] == len(rows) and state["cpu_time"] == pytest.approx(cpu[-1])
    train(cfg, progress=False)  # resumed at the budget: nothing more to train
    assert torch.load(tmp_path / "last.pt", weights_only=False)["step"] == len(rows)
    assert SpeakerEncoder.load(tmp_path / "model.pt").meta["step"] == len(rows)

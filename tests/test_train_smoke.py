"""Training end to end on synthetic speakers (no corpora): learning, the lr schedule, gradient clipping,
MultiReader weights and validation trials, each checked through what ``train`` writes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ge2e.config import (
    InferenceConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    SourceConfig,
    TrainConfig,
    ValConfig,
)
from ge2e.data.sampler import SpeakerPool
from ge2e.loss import GE2ELoss
from ge2e.model import SpeakerEncoder
from ge2e.train import Objective, train, validation_eer
from synthetic import AUDIO, LabelledCache, make_cache, tiny_train_config


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The shared 2-core machines run these tiny models faster on one intra-op thread than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> tuple[Path, Path]:
    """(train, validation) caches of disjoint synthetic voices: 16 x 6 and 5 x 6 clips."""
    root = tmp_path_factory.mktemp("synth")
    return make_cache(root / "train", 16, 6, seed=0), make_cache(root / "val", 5, 6, seed=1)


def config(caches: tuple[Path, Path], out: Path, **changes) -> TrainConfig:
    train_cache, val_cache = caches
    sources, val_sources = [SourceConfig(cache=str(train_cache))], [SourceConfig(cache=str(val_cache))]
    return tiny_train_config(out, sources, val_sources, **{"audio": AUDIO, **changes})


def metrics(out: Path) -> list[dict[str, str]]:
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_synthetic_training_learns_and_validates_below_chance(caches, tmp_path):
    train(config(caches, tmp_path), progress=False)
    rows = metrics(tmp_path)
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 40
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10]), losses
    val = {int(r["step"]): float(r["val_eer"]) for r in rows if r["val_eer"]}
    assert sorted(val) == [10, 20, 30, 40]
    assert val[40] < 0.5, val  # chance is 0.5
    best = SpeakerEncoder.load(tmp_path / "best.pt")
    assert best.meta["val_eer"] == min(val.values())
    assert best.meta["step"] == min(val, key=val.get)


def test_learning_rate_halves_every_lr_halve_every_steps(caches, tmp_path):
    optim = OptimConfig(name="sgd", lr=0.05, lr_halve_every=4)
    train(config(caches, tmp_path, optim=optim, steps=14, val=ValConfig()), progress=False)
    lrs = [float(r["lr"]) for r in metrics(tmp_path)]
    # runs of equal rates; whether a row logs the rate its step used or the next step's shifts the runs by one
    # step, so only the runs between the first and the last must be exactly lr_halve_every long
    values, runs = [], []
    for lr in lrs:
        if values and lr == values[-1]:
            runs[-1] += 1
        else:
            values.append(lr)
            runs.append(1)
    assert values == [pytest.approx(optim.lr * 0.5**k) for k in range(len(values))]
    assert len(values) == 4 and runs[1:-1] == [optim.lr_halve_every] * 2, lrs


def _flat(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([params[k].reshape(-1).float() for k in sorted(params)])


def test_gradient_norm_is_clipped(caches, tmp_path):
    """One SGD step moves the parameters by exactly lr x clip when the gradient norm is larger than clip."""
    optim = OptimConfig(name="sgd", lr=0.1, momentum=0.0, grad_clip=1e-3)
    loss = LossConfig(init_w=10.0, init_b=-5.0)
    train(config(caches, tmp_path / "start", optim=optim, loss=loss, steps=0, val=ValConfig()), progress=False)
    cfg = config(caches, tmp_path / "one", optim=optim, loss=loss, steps=1, checkpoint_every=1, val=ValConfig())
    train(cfg, progress=False)
    (row,) = metrics(tmp_path / "one")
    assert float(row["grad_norm"]) > 100 * optim.grad_clip  # so clipping has something to do
    before = {f"encoder.{k}": v for k, v in SpeakerEncoder.load(tmp_path / "start" / "model.pt").state_dict().items()}
    before |= {"criterion.w": torch.tensor(loss.init_w), "criterion.b": torch.tensor(loss.init_b)}
    after = torch.load(tmp_path / "one" / "last.pt", weights_only=False)["objective"]
    assert sorted(after) == sorted(before)
    step = (_flat(after) - _flat(before)).norm().item()
    assert step == pytest.approx(optim.lr * optim.grad_clip, rel=1e-3)


def test_multireader_loss_is_the_alpha_weighted_sum(caches, tmp_path):
    train_cache, val_cache = caches
    sources = [SourceConfig(cache=str(train_cache), weight=0.25), SourceConfig(cache=str(val_cache), weight=2.0)]
    cfg = config(caches, tmp_path, steps=4, val=ValConfig())
    cfg.data.sources = sources
    train(cfg, progress=False)
    for row in metrics(tmp_path):
        parts = [float(row["loss_0"]), float(row["loss_1"])]
        assert float(row["loss"]) == pytest.approx(sum(s.weight * p for s, p in zip(sources, parts, strict=True)))
        assert parts[0] != pytest.approx(parts[1])  # two different losses, so the weights are visible


def test_objective_weights_each_source_and_backpropagates_the_weighted_sum():
    torch.manual_seed(0)
    encoder = SpeakerEncoder(ModelConfig(hidden_size=8, proj_size=0, num_layers=1))
    criterion = GE2ELoss()
    weights = [0.3, 1.7]
    batches = [torch.randn(3, 2, 20, 40), torch.randn(2, 3, 20, 40)]
    total, losses = Objective(encoder, criterion, weights)(batches)
    separate = [criterion(encoder(b.flatten(0, 1)).view(*b.shape[:2], -1)) for b in batches]
    torch.testing.assert_close(torch.stack(losses), torch.stack(separate))
    torch.testing.assert_close(total, weights[0] * separate[0] + weights[1] * separate[1])
    grads = torch.autograd.grad(total, [criterion.w])[0]
    parts = [torch.autograd.grad(s, [criterion.w], retain_graph=True)[0] for s in separate]
    expected = weights[0] * parts[0] + weights[1] * parts[1]
    torch.testing.assert_close(grads, expected)


class OracleEncoder(nn.Module):
    """Embeds a window as its mean frame: on ``LabelledCache`` speakers whose frames are one-hot speaker codes
    it is a perfect speaker classifier, so any same-speaker "negative" trial shows up as an error."""

    embedding_size = 40
    inference = InferenceConfig()
    device = torch.device("cpu")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(frames.mean(dim=1), dim=-1)


def test_validation_trials_pair_same_and_different_speakers():
    cache = LabelledCache({f"s{k}": [30 + 7 * i for i in range(2 + k % 3)] for k in range(6)})
    for u, utt in enumerate(cache.utterances):  # one-hot speaker codes
        s = sorted({x.speaker for x in cache.utterances}).index(utt.speaker)
        cache._frames[u][:] = np.eye(40, dtype=np.float32)[s]
    pool = SpeakerPool.from_indices(cache, list(range(len(cache.utterances))), 2)
    assert validation_eer(OracleEncoder(), pool, 400) == 0.0

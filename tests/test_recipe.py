"""The model-v2 recipe fixes: each test here fails on the behaviour it replaced.

- the GE2E/TE2E loss runs in float32 under autocast;
- with Adam, the paper's gradient scales become learning-rate factors (Adam cancels gradient scales);
- a speaker's batch block uses distinct utterances, and short utterances are joined with *other* ones;
- every cache of a run shares the config's front end;
- the logged learning rate is the one the step used;
- readers for speechocean762 and wuw2.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from ge2e.config import DataConfig, InferenceConfig, ModelConfig, OptimConfig, SourceConfig, TrainConfig
from ge2e.data.readers import read_corpus
from ge2e.data.sampler import BatchDataset, SpeakerPool, fit_length
from ge2e.errors import ConfigError, Ge2eError
from ge2e.loss import GE2ELoss, TE2ELoss
from ge2e.model import SpeakerEncoder, preset
from ge2e.similarity import similarity_matrix
from ge2e.train import Objective, build_optimizer, train
from synthetic import AUDIO, LabelledCache, make_cache, tiny_train_config

# ---------------------------------------------------------------------------------------------------- loss


@pytest.mark.parametrize("loss", [GE2ELoss(method="softmax"), GE2ELoss(method="contrast"), TE2ELoss()])
def test_loss_is_float32_under_bf16_autocast(loss: torch.nn.Module) -> None:
    torch.manual_seed(0)
    embeddings = torch.randn(8, 5, 64)
    kwargs = {"shift": 3} if isinstance(loss, TE2ELoss) else {}
    reference = loss(embeddings, **kwargs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = loss(embeddings, **kwargs)
        # what the loss must not use: the bare similarity matrix under autocast is off by ~1e-2
        rounded = similarity_matrix(embeddings, 10.0, -5.0)
    assert (rounded - similarity_matrix(embeddings, 10.0, -5.0)).abs().max() > 1e-3
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, reference, rtol=1e-6, atol=1e-5)


def test_similarity_is_float32_under_autocast_even_from_bf16_embeddings() -> None:
    torch.manual_seed(1)
    embeddings = torch.randn(6, 4, 32)
    loss = GE2ELoss()
    reference = loss.similarity(embeddings)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss.similarity(embeddings)
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ optimiser


def _objective(proj_size: int) -> Objective:
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=16, proj_size=proj_size, num_layers=1)
    return Objective(SpeakerEncoder(config), GE2ELoss(), [1.0])


@pytest.mark.parametrize("proj_size", [0, 8])
def test_adam_applies_the_paper_gradient_scales_as_learning_rate_factors(proj_size: int) -> None:
    objective = _objective(proj_size)
    cfg = TrainConfig(optim=OptimConfig(name="adam", lr=0.01))
    optimizer = build_optimizer(objective, cfg)
    before = {name: p.detach().clone() for name, p in objective.named_parameters()}
    torch.manual_seed(1)
    total, _ = objective([torch.randn(3, 4, 20, 40)])
    total.backward()
    optimizer.step()
    # Adam's first step moves every parameter with a non-zero gradient by ~lr: the step size shows the group lr.
    steps = {name: (p.detach() - before[name]).abs().max().item() for name, p in objective.named_parameters()}
    projections = {id(p) for p in objective.encoder.projection_parameters()}
    names = {id(p): name for name, p in objective.named_parameters()}
    # (b cancels out of the softmax loss, so its gradient is ~0 and only w shows its rate)
    assert steps["criterion.w"] == pytest.approx(0.01 * 0.01, rel=1e-2)
    assert optimizer.param_groups[2]["params"][1] is objective.criterion.b
    assert optimizer.param_groups[2]["lr"] == pytest.approx(0.01 * 0.01)
    for pid in projections:
        assert steps[names[pid]] == pytest.approx(0.01 * 0.5, rel=1e-2)
    assert steps["encoder.lstm.weight_ih_l0"] == pytest.approx(0.01, rel=1e-2)


def test_sgd_keeps_one_rate_because_the_gradient_hooks_scale() -> None:
    objective = _objective(0)
    optimizer = build_optimizer(objective, TrainConfig(optim=OptimConfig(name="sgd", lr=0.01)))
    assert {g["lr"] for g in optimizer.param_groups} == {0.01}
    counted = sum(len(g["params"]) for g in optimizer.param_groups)
    assert counted == len(list(objective.parameters()))


# -------------------------------------------------------------------------------------------------- sampler


UTTERANCE, REAL = 1, 3  # columns of synthetic.LabelledCache frames


def _pool(per_speaker: list[int], length: int) -> SpeakerPool:
    cache = LabelledCache({f"s{i}": [length] * count for i, count in enumerate(per_speaker)})
    return SpeakerPool.from_indices(cache, list(range(len(cache.utterances))))  # type: ignore[arg-type]


def _sources(block: np.ndarray) -> list[set[int]]:
    """The utterances each row of a speaker's ``(M, T, n_mels)`` block was cut from."""
    return [set(row[row[:, REAL] == 1, UTTERANCE].astype(int).tolist()) for row in block]


@pytest.mark.parametrize("seed", range(5))
def test_speakers_with_enough_utterances_give_m_distinct_ones(seed: int) -> None:
    pool = _pool([10, 8, 12, 9], length=300)
    cfg = DataConfig(speakers_per_batch=4, utterances_per_speaker=8, min_frames=50, max_frames=60, num_workers=0)
    (batch,) = BatchDataset([pool], cfg, seed=seed)[0]
    for block in batch.numpy():
        used = [next(iter(s)) for s in _sources(block)]
        assert len(set(used)) == 8


def test_speakers_with_fewer_than_m_use_every_utterance_before_repeating() -> None:
    # with replacement (the old sampler), 8 draws from 5 utterances miss one in most batches
    pool = _pool([5, 5, 5], length=300)
    cfg = DataConfig(speakers_per_batch=3, utterances_per_speaker=8, min_frames=50, max_frames=60, num_workers=0)
    for step in range(20):
        (batch,) = BatchDataset([pool], cfg, seed=0)[step]
        for block in batch.numpy():
            used = [next(iter(s)) for s in _sources(block)]
            assert set(used) == set(pool.groups[used[0] // 5].tolist())
            rows = {row.tobytes() for row in block}
            assert len(rows) == 8  # repeats of one utterance are other crops of it, never the same row


def test_short_utterances_are_joined_with_other_utterances_of_the_speaker() -> None:
    pool = _pool([6], length=30)  # six 30-frame words; a 160-frame crop needs six of them
    rng = np.random.default_rng(0)
    for _ in range(20):
        first = int(rng.integers(0, 6))
        frames = fit_length(pool, 0, first, 150, "concat", rng)
        values = frames[:, UTTERANCE].astype(int)
        runs = [values[0]] + [v for a, v in itertools.pairwise(values) if v != a]
        # every word appears at most once in a crop: all six are used before any repeats
        assert len(runs) == len(set(runs)) >= 5


# ------------------------------------------------------------------------------------------ training run


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cache(tmp_path_factory.mktemp("syn"), speakers=4, utterances=4)


def _tiny_run(cache: Path, out: Path, **changes: object) -> TrainConfig:
    """:func:`synthetic.tiny_train_config` without validation: SGD at 0.04 halved every 2 steps, 5 steps."""
    sgd = OptimConfig(name="sgd", lr=0.04, lr_halve_every=2)
    changes = {"audio": AUDIO, "optim": sgd, "steps": 5, "threads": 1, **changes}
    return tiny_train_config(out, [SourceConfig(cache=str(cache))], [], **changes)


def test_logged_learning_rate_is_the_one_each_step_used(synthetic_cache: Path, tmp_path: Path) -> None:
    train(_tiny_run(synthetic_cache, tmp_path / "run"), progress=False)
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rates = [float(row["lr"]) for row in csv.DictReader(f)]
    assert rates == pytest.approx([0.04, 0.04, 0.02, 0.02, 0.01])


def test_a_model_embeds_with_windows_of_its_training_crops(synthetic_cache: Path, tmp_path: Path) -> None:
    model = train(_tiny_run(synthetic_cache, tmp_path / "a", steps=1), progress=False)
    assert model.inference.window_frames == 50  # crops of 40-60 frames
    stored = SpeakerEncoder.load(tmp_path / "a" / "model.pt")
    assert stored.inference == model.inference
    explicit = _tiny_run(synthetic_cache, tmp_path / "b", steps=1, inference=InferenceConfig(window_frames=160))
    assert train(explicit, progress=False).inference.window_frames == 160


def test_keyword_preset_is_the_papers_text_dependent_model() -> None:
    c = preset("keyword")
    assert (c.num_layers, c.hidden_size, c.proj_size) == (3, 128, 64)
    assert SpeakerEncoder(c).embedding_size == 64


def test_training_refuses_a_cache_of_another_front_end(synthetic_cache: Path, tmp_path: Path) -> None:
    cfg = _tiny_run(synthetic_cache, tmp_path / "run", audio=dataclasses.replace(AUDIO, f_max=8000.0))
    with pytest.raises(ConfigError, match=r"another front end \(f_max: 7600.0 in the cache, 8000.0 in the config"):
        train(cfg, progress=False)
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_warm_start_copies_weights_and_refuses_another_architecture(synthetic_cache: Path, tmp_path: Path) -> None:
    first = train(_tiny_run(synthetic_cache, tmp_path / "a", steps=2), progress=False)
    cfg = _tiny_run(synthetic_cache, tmp_path / "b", steps=1, init=str(tmp_path / "a" / "model.pt"))
    cfg.optim.lr = 0.0
    second = train(cfg, progress=False)
    for (name, p), q in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
    other = _tiny_run(synthetic_cache, tmp_path / "c", init=str(tmp_path / "a" / "model.pt"))
    other.model = ModelConfig(hidden_size=12, proj_size=0, num_layers=1)
    with pytest.raises(ConfigError, match="model config differs"):
        train(other, progress=False)


# -------------------------------------------------------------------------------------------------- readers


def _tree(root: Path, names: list[str]) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()
    return root


def test_wuw2_reader_labels_wake_words_from_sessions_tsv(tmp_path: Path) -> None:
    names = ["02bb3cf3/00009-001.opus", "02bb3cf3/00009-007.opus", "7f9a2b82/00159-005.opus", "LICENSE.md"]
    root = _tree(tmp_path / "wuw2", names)
    utts = read_corpus(root)  # auto-detected, before generic
    assert [(u.speaker, u.label, u.corpus) for u in utts] == [
        ("02bb3cf3", "operator", "wuw2"),
        ("02bb3cf3", "", "wuw2"),
        ("7f9a2b82", "voyager", "wuw2"),
    ]
    header = "file\tspeaker\tsession\tutt\tphone\tgender\tdialect\tdate\tkeyword\tcontext\n"
    rows = [
        "02bb3cf3/00009-001.opus\t02bb3cf3\t00009\t001\tcell\tmale\tnative\t2001\tOperator\tsentence\n",
        "7f9a2b82/00159-005.opus\t7f9a2b82\t00159\t005\tcell\tmale\tnative\t2001\tVoyager\talone\n",
    ]
    (root / "sessions.tsv").write_text(header + "".join(rows))
    assert [u.label for u in read_corpus(root, "wuw2")] == ["", "", "voyager"]
    (root / "sessions.tsv").write_text(header + rows[1].replace("\t7f9a2b82\t", "\tdeadbeef\t"))
    with pytest.raises(Ge2eError, match="listed for speaker deadbeef"):
        read_corpus(root, "wuw2")


def test_speechocean762_reader_checks_speakers_tsv(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _tree(tmp_path / "so", ["SPEAKER0001/000010011.opus", "SPEAKER0003/000030012.opus", "NOTICE"])
    utts = read_corpus(root)
    assert [(u.speaker, u.corpus) for u in utts] == [(s, "speechocean762") for s in ("SPEAKER0001", "SPEAKER0003")]
    (root / "speakers.tsv").write_text("speaker\tsplit\tage\tgender\nSPEAKER0001\ttrain\t6\tm\n")
    with caplog.at_level(logging.WARNING):
        read_corpus(root)
    assert "1 speaker folder(s) not in speakers.tsv, e.g. SPEAKER0003" in caplog.text


def test_real_new_corpora(data_root: Path) -> None:
    for corpus, speakers, files in (("wuw2", 110, 2466), ("speechocean762", 225, 4500)):
        utts = read_corpus(data_root / corpus)
        assert len({u.key for u in utts}) == speakers and len(utts) == files
        split = (data_root / "splits" / f"{corpus}.train.txt").read_text().split()
        assert set(split) <= {u.speaker for u in utts}
    labels = {u.label for u in read_corpus(data_root / "wuw2")}
    assert labels == {"", "operator", "thinkengine", "onword", "wildfire", "voyager"}

"""The GE2E batch contract of ``ge2e.data.sampler`` on labelled in-memory frames (no corpora needed).

Every frame says which speaker, utterance and offset it is (see ``synthetic.LabelledCache``), so the tests
check the contract itself: N distinct speakers, M of each speaker's own utterances, one crop length per step
shared by every data source and drawn over the whole [min_frames, max_frames] range, contiguous crops,
zero left-padding in "pad" mode, and the ``min_utterances`` filter.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ge2e.config import DataConfig, SourceConfig
from ge2e.data.sampler import BatchDataset, SpeakerPool, crop, random_span, spec_mask
from ge2e.data.splits import data_root, resolve_speakers
from ge2e.errors import ConfigError
from synthetic import LabelledCache, make_cache

SPEAKER, UTTERANCE, OFFSET, REAL = 0, 1, 2, 3


def pool_of(lengths: dict[str, list[int]], min_utterances: int = 1) -> SpeakerPool:
    cache = LabelledCache(lengths)
    return SpeakerPool.from_indices(cache, list(range(len(cache.utterances))), min_utterances)


def long_pool(speakers: int, utterances: int = 5, frames: int = 400) -> SpeakerPool:
    return pool_of({f"s{k:02d}": [frames] * utterances for k in range(speakers)})


def test_crop_length_is_drawn_per_step_over_the_whole_range():
    cfg = DataConfig(speakers_per_batch=2, utterances_per_speaker=2)  # the paper's 140-180 frames
    dataset = BatchDataset([long_pool(3)], cfg, seed=0)
    lengths = {dataset[step][0].shape[2] for step in range(400)}
    assert lengths == set(range(cfg.min_frames, cfg.max_frames + 1))


def test_every_source_of_a_step_shares_its_crop_length():
    cfg = DataConfig(speakers_per_batch=2, utterances_per_speaker=2, min_frames=20, max_frames=120)
    dataset = BatchDataset([long_pool(3), long_pool(4), long_pool(2)], cfg, seed=0)
    for step in range(30):
        assert len({batch.shape[2] for batch in dataset[step]}) == 1, f"step {step}"


def test_speakers_are_distinct_and_utterances_their_own():
    cfg = DataConfig(speakers_per_batch=6, utterances_per_speaker=3, min_frames=10, max_frames=30)
    for size in (6, 9):  # N equal to the pool (a permutation) and N smaller than it
        pool = long_pool(size)
        cache = pool.cache
        for step in range(40):
            (batch,) = BatchDataset([pool], cfg, seed=1)[step]
            speakers = batch[:, :, :, SPEAKER].numpy()
            assert (speakers == speakers[:, :1, :1]).all(), "a row mixes speakers"
            assert len(set(speakers[:, 0, 0].tolist())) == cfg.speakers_per_batch, f"repeated speaker, step {step}"
            for j in range(cfg.speakers_per_batch):
                for i in range(cfg.utterances_per_speaker):
                    u = int(batch[j, i, 0, UTTERANCE])
                    assert cache.utterances[u].key == pool.speakers[int(speakers[j, 0, 0])]


def test_crops_are_contiguous_windows_at_random_offsets():
    cfg = DataConfig(speakers_per_batch=2, utterances_per_speaker=2, min_frames=50, max_frames=50)
    dataset = BatchDataset([long_pool(2, frames=300)], cfg, seed=2)
    starts = set()
    for step in range(20):
        offsets = dataset[step][0][..., OFFSET].numpy()  # (N, M, T)
        assert (np.diff(offsets, axis=-1) == 1).all()
        assert (offsets >= 0).all() and (offsets <= 299).all()
        starts |= set(offsets[..., 0].ravel().tolist())
    assert len(starts) > 20  # not always the start of the utterance


def test_pad_mode_left_pads_short_utterances_with_zeros():
    cfg = DataConfig(speakers_per_batch=2, utterances_per_speaker=2, min_frames=30, max_frames=30, short="pad")
    (batch,) = BatchDataset([pool_of({"a": [12, 12], "b": [12, 12]})], cfg, seed=0)[0]
    pad = cfg.max_frames - 12
    assert (batch[:, :, :pad] == 0).all()
    assert (batch[:, :, pad:, REAL] == 1).all()
    # the whole keyword, in order, ends the crop
    assert (batch[:, :, pad:, OFFSET].numpy() == np.arange(12)).all()


def test_concat_mode_fills_short_crops_with_the_same_speaker():
    cfg = DataConfig(speakers_per_batch=2, utterances_per_speaker=2, min_frames=30, max_frames=30, short="concat")
    pool = pool_of({"a": [12, 9, 14], "b": [10, 11, 13]})
    for step in range(10):
        (batch,) = BatchDataset([pool], cfg, seed=0)[step]
        assert (batch[..., REAL] == 1).all(), "concat must not pad"
        speakers = batch[..., SPEAKER].numpy()
        assert (speakers == speakers[:, :1, :1]).all()


def test_min_utterances_filter():
    lengths = {"one": [100], "two": [100, 100], "three": [100] * 3, "four": [100] * 4}
    assert pool_of(lengths, 1).speakers == ["mem/four", "mem/one", "mem/three", "mem/two"]
    assert pool_of(lengths, 3).speakers == ["mem/four", "mem/three"]
    pool = pool_of(lengths, 4)
    assert pool.speakers == ["mem/four"] and [len(g) for g in pool.groups] == [4]
    cfg = DataConfig(speakers_per_batch=2, utterances_per_speaker=2, min_utterances=4)
    with pytest.raises(ConfigError, match="1 speakers"):
        BatchDataset([pool], cfg, seed=0)


def test_batches_are_a_pure_function_of_seed_rank_and_step():
    cfg = DataConfig(speakers_per_batch=2, utterances_per_speaker=2, min_frames=20, max_frames=40)
    pools = [long_pool(4)]
    first = BatchDataset(pools, cfg, seed=5, rank=1, steps=30)
    assert len(first) == 30
    assert (first[7][0] == BatchDataset(pools, cfg, seed=5, rank=1)[7][0]).all()
    for other in (BatchDataset(pools, cfg, seed=6, rank=1), BatchDataset(pools, cfg, seed=5, rank=0)):
        assert any(other[k][0].shape != first[k][0].shape or (other[k][0] != first[k][0]).any() for k in range(5))
    with pytest.raises(ConfigError, match="min_frames <= max_frames"):
        BatchDataset(pools, DataConfig(speakers_per_batch=2, min_frames=50, max_frames=40), seed=0)
    with pytest.raises(ConfigError, match="1 <= min_frames"):
        BatchDataset(pools, DataConfig(speakers_per_batch=2, min_frames=0, max_frames=40), seed=0)


def test_speakers_from_lists_and_official_splits(tmp_path, monkeypatch):
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "Corp.dev.txt").write_text("a\nb  # comment\n\n")
    listed = tmp_path / "mine.txt"
    listed.write_text("Other/x\n")
    monkeypatch.setenv("GE2E_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert resolve_speakers([]) is None
    assert resolve_speakers(["Corp.dev"]) == {"Corp/a", "Corp/b"}
    assert resolve_speakers([str(listed), "Corp.dev"]) == {"Other/x", "Corp/a", "Corp/b"}
    with pytest.raises(ConfigError, match=r"expected '<corpus>\.<split>'"):
        resolve_speakers(["nodot"])
    monkeypatch.delenv("GE2E_DATA")
    assert data_root() == Path("../shared/data")


def test_pool_from_a_prepared_cache_keeps_the_listed_speakers(tmp_path):
    cache = make_cache(tmp_path, speakers=3, utterances=2, labels=2, augment="noise")
    listed = tmp_path / "two.txt"
    listed.write_text("synth/spk0\nsynth/spk2\n")
    pool = SpeakerPool.from_source(SourceConfig(cache=str(cache), splits=[str(listed)]), min_utterances=2)
    assert pool.speakers == ["synth/spk0", "synth/spk2"] and len(pool) == 2
    assert pool.name == f"{cache}:*"
    assert [sorted(pool.cache.utterances[i].speaker for i in g) for g in pool.groups] == [["spk0"] * 4, ["spk2"] * 4]
    assert len(SpeakerPool.from_source(SourceConfig(cache=str(cache)), min_utterances=5)) == 0
    # the keyword label and the augmented copies are filters too
    keyword = SpeakerPool.from_source(SourceConfig(cache=str(cache), label="w1"))
    assert keyword.name == f"{cache}:w1" and len(keyword) == 3
    assert {keyword.cache.utterances[i].label for g in keyword.groups for i in g} == {"w1"}
    assert [len(g) for g in keyword.groups] == [2, 2, 2]  # the clip and its noisy copy
    originals = SpeakerPool.from_source(SourceConfig(cache=str(cache), label="w1", augmented=False))
    assert [len(g) for g in originals.groups] == [1, 1, 1]


def test_pool_defaults_keep_single_utterance_speakers_and_have_no_name():
    pool = pool_of({"a": [50], "b": [50, 50]})
    cache = pool.cache
    default = SpeakerPool.from_indices(cache, list(range(len(cache.utterances))))
    assert default.speakers == ["mem/a", "mem/b"] and default.name == ""


def test_crop_starts_anywhere_including_both_ends():
    frames = np.arange(10, dtype=np.float32)[:, None]
    rng = np.random.default_rng(0)
    starts = {int(crop(frames, 9, rng)[0, 0]) for _ in range(40)}
    assert starts == {0, 1}


def test_an_utterance_of_exactly_the_crop_length_is_the_crop():
    cfg = DataConfig(speakers_per_batch=2, utterances_per_speaker=2, min_frames=30, max_frames=30)
    for step in range(5):
        (batch,) = BatchDataset([pool_of({"a": [30, 30], "b": [30, 30]})], cfg, seed=0)[step]
        assert batch.dtype == torch.float32
        assert (batch[..., OFFSET].numpy() == np.arange(30)).all()  # whole utterance, nothing appended


def test_concat_joins_different_utterances_before_repeating_any():
    cfg = DataConfig(speakers_per_batch=2, utterances_per_speaker=1, min_frames=60, max_frames=60)
    pool = pool_of({"a": [10] * 7, "b": [10] * 7})
    for step in range(10):
        (batch,) = BatchDataset([pool], cfg, seed=3)[step]
        for row in batch[:, 0].numpy():
            ids = [int(u) for u, t in zip(row[:, UTTERANCE], row[:, OFFSET], strict=True) if t == 0]
            assert len(ids) >= 5 and len(ids) == len(set(ids)), ids  # 5+ utterances, none twice


def test_one_frame_crops_are_allowed():
    cfg = DataConfig(speakers_per_batch=2, utterances_per_speaker=2, min_frames=1, max_frames=1)
    assert BatchDataset([long_pool(2)], cfg, seed=0)[0][0].shape[2] == 1


# ------------------------------------------------------------------------------------------ SpecAugment masks


def test_spec_masks_zero_one_band_and_one_span():
    rng = np.random.default_rng(0)
    batch = rng.uniform(1.0, 2.0, size=(3, 4, 60, 40)).astype(np.float32)  # no zero before masking
    spec_mask(batch, 8, 20, rng)
    widths = set()
    for zeros in batch.reshape(-1, 60, 40) == 0.0:
        bands = np.flatnonzero(zeros.all(axis=0))  # mel bands zeroed over the whole crop
        frames = np.flatnonzero(zeros.all(axis=1))  # frames zeroed in every band
        for run in (bands, frames):
            assert run.size == 0 or np.all(np.diff(run) == 1)  # one contiguous block each
        assert bands.size <= 8 and frames.size <= 20
        np.testing.assert_array_equal(zeros, zeros.all(axis=0)[None, :] | zeros.all(axis=1)[:, None])  # nothing else
        widths.add((bands.size, frames.size))
    assert len(widths) > 5  # widths are drawn, not fixed


def test_spec_masks_leave_the_crops_alone():
    pool = pool_of({f"s{k}": [300] * 6 for k in range(3)})
    plain = DataConfig(speakers_per_batch=3, utterances_per_speaker=4, min_frames=50, max_frames=60, num_workers=0)
    masked = dataclasses.replace(plain, freq_mask=8, time_mask=20)
    for step in range(5):
        (a,) = BatchDataset([pool], plain, seed=0)[step]
        (b,) = BatchDataset([pool], masked, seed=0)[step]
        changed = a != b
        assert changed.any()
        np.testing.assert_array_equal(b[changed], 0.0)  # only masking differs


def test_random_span_draws_every_width_and_place():
    rng = np.random.default_rng(1)
    spans = {(s.start, s.stop) for s in (random_span(3, 5, rng) for _ in range(2_000))}
    assert spans == {(a, a + w) for w in range(4) for a in range(5 - w + 1)}  # widths 0..3 anywhere in 0..5
    capped = {(s.start, s.stop) for s in (random_span(9, 2, rng) for _ in range(500))}
    assert capped == {(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2)}  # never wider than the axis

"""Featurizing files for the cache: one (file, augmentation) job -> float16 log-mel frames, in a worker pool.

The pool never outlives its parent. Workers ignore Ctrl-C (the parent handles it and shuts the pool down, so
no worker prints a traceback of its own), and each worker watches its parent: when the parent is gone (SIGKILL,
a crash) the worker exits within :data:`PARENT_POLL_S` instead of idling on for minutes. The watch starts as soon
as a worker runs code of ours, before it imports torch; a worker killed orphan while still importing ge2e (the
spawn start, seconds on a busy machine) exits once that import is done.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from ge2e.config import AudioConfig
from ge2e.data.cache import FEATURE_DTYPE
from ge2e.data.readers import Utterance
from ge2e.errors import AudioError

logger = logging.getLogger(__name__)

PARENT_POLL_S = 0.2  # how often a worker checks that its parent is alive

Job = tuple[Utterance, str]  # (file, augmentation variant; "" for the original)


class Featurizer:
    """Turns one job into float16 features, or an error message; runs in the worker processes."""

    def __init__(self, cfg: dict[str, Any], noise_files: Sequence[str], seed: int) -> None:
        self.cfg = AudioConfig(**cfg)
        self.noise_files = list(noise_files)
        self.seed = seed

    def __call__(self, job: tuple[str, str]) -> tuple[np.ndarray | None, str]:
        """(path, variant) -> ((T, n_mels) float16, "") or (None, problem)."""
        from ge2e.audio import load_audio, preprocess
        from ge2e.data.augment import augment as augment_wav
        from ge2e.data.augment import rng_for

        path, variant = job
        sr = self.cfg.sample_rate
        try:
            if not variant:
                feats = preprocess(path, cfg=self.cfg)
            else:
                wav = load_audio(path, target_sr=sr)
                wav = augment_wav(wav, sr, variant, rng_for(self.seed, path, variant), self.noise_files)
                feats = preprocess(wav, sr=sr, cfg=self.cfg, name=path)
        except AudioError as exc:
            return None, exc.problem
        except Exception as exc:  # a library failing on one odd file must not abort an hour-long run
            logger.warning("%s: unexpected %s: %s", path, type(exc).__name__, exc)
            return None, f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return feats.astype(FEATURE_DTYPE), ""


_worker: Featurizer | None = None


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # the parent is gone: nobody will read our results, and atexit handlers could block


def _init_worker(cfg: dict[str, Any], noise_files: Sequence[str], seed: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()
    import torch  # after the watch starts: importing torch takes seconds on a busy machine

    # one thread per process: N workers x M intra-op threads would oversubscribe the cores
    torch.set_num_threads(1)
    global _worker
    _worker = Featurizer(cfg, noise_files, seed)


def _run_job(job: tuple[str, str]) -> tuple[np.ndarray | None, str]:
    assert _worker is not None, "worker not initialised"
    return _worker(job)


def results(
    jobs: list[tuple[str, str]], featurizer: Featurizer, workers: int
) -> Iterator[tuple[np.ndarray | None, str]]:
    """Results of ``jobs`` in order: in this process when ``workers`` <= 1, else in a spawned process pool.

    Closing the generator early (an error, Ctrl-C, SIGTERM turned into an exception) cancels the queued jobs and
    ends the workers without waiting for the ones in flight.
    """
    if workers <= 1:
        yield from map(featurizer, jobs)
        return
    # spawn, not fork: forking a process that has started torch threads can deadlock the children
    ctx = multiprocessing.get_context("spawn")
    init = (dataclasses.asdict(featurizer.cfg), featurizer.noise_files, featurizer.seed, os.getpid())
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=init)
    finished = False
    try:
        yield from pool.map(_run_job, jobs, chunksize=4)
        finished = True
    finally:
        if not finished:
            _terminate(pool)
        pool.shutdown(wait=True, cancel_futures=True)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Kill the workers now: a job in flight may take seconds, and an interrupted run discards its shard anyway."""
    # ProcessPoolExecutor has no public way to stop running jobs before Python 3.14 (terminate_workers)
    for process in list((pool._processes or {}).values()):
        process.terminate()

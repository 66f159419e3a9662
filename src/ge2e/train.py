"""GE2E training, top to bottom: config -> distributed setup -> data -> model -> optimiser -> loop.

Single process::

    ge2e train recipes/shared_ti/conf/small.yaml

Several GPUs or nodes (torch DistributedDataParallel)::

    torchrun --nproc_per_node 4 -m ge2e train recipes/shared_ti/conf/paper.yaml

Runs are resumable: ``out_dir/last.pt`` holds model, loss, optimiser, scheduler and RNG state, and batches are a
pure function of (seed, rank, step), so a resumed run reproduces the losses an uninterrupted run would have had.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ge2e.config import AudioConfig, InferenceConfig, TrainConfig, save_config
from ge2e.data.sampler import BatchDataset, SpeakerPool
from ge2e.errors import ConfigError
from ge2e.inference import embed_mels
from ge2e.loss import build_loss
from ge2e.metrics import eer
from ge2e.model import SpeakerEncoder, atomic_torch_save, preset
from ge2e.scoring import cosine_scores

logger = logging.getLogger(__name__)

TRAIN_STATE_VERSION = 1


class Objective(nn.Module):
    """Encoder and loss in one module, so DDP synchronises w and b along with the encoder.

    ``forward`` takes one ``(N, M, T, n_mels)`` batch per data source and returns the MultiReader loss
    sum_k alpha_k L(D_k) (paper Eq. 12) and the per-source losses.
    """

    def __init__(self, encoder: SpeakerEncoder, criterion: nn.Module, weights: list[float]) -> None:
        super().__init__()
        self.encoder, self.criterion, self.weights = encoder, criterion, weights

    def forward(self, batches: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        sizes = [b.shape[:2] for b in batches]
        frames = torch.cat([b.flatten(0, 1) for b in batches])  # one encoder pass for every source
        embeddings = self.encoder(frames).split([n * m for n, m in sizes])
        losses = [self.criterion(e.view(n, m, -1)) for e, (n, m) in zip(embeddings, sizes, strict=True)]
        total = sum(w * loss for w, loss in zip(self.weights, losses, strict=True))
        return total, losses


def validation_eer(encoder: SpeakerEncoder, pool: SpeakerPool, num_trials: int, seed: int = 0) -> float:
    """EER on held-out speakers: random same/different-speaker pairs of whole utterances (sliding windows)."""
    rng = np.random.default_rng(seed)
    multi = [s for s, g in enumerate(pool.groups) if len(g) > 1]
    pairs, labels = [], []
    for t in range(num_trials):
        if t % 2 == 0 and multi:
            a, b = rng.choice(pool.groups[int(rng.choice(multi))], size=2, replace=False)
            labels.append(1)
        else:
            s1, s2 = rng.choice(len(pool), size=2, replace=False)
            a, b = rng.choice(pool.groups[s1]), rng.choice(pool.groups[s2])
            labels.append(0)
        pairs.append((int(a), int(b)))
    needed = sorted({i for p in pairs for i in p})
    position = {u: k for k, u in enumerate(needed)}
    was_training = encoder.training
    encoder.eval()
    emb = embed_mels(encoder, [torch.from_numpy(pool.cache.features(u)) for u in needed], encoder.inference).numpy()
    encoder.train(was_training)
    first = emb[[position[a] for a, _ in pairs]]
    second = emb[[position[b] for _, b in pairs]]
    return eer(cosine_scores(first, second), np.asarray(labels))[0]


def check_front_end(audio: AudioConfig, pools: list[SpeakerPool]) -> None:
    """Every training and validation cache must hold features of the config's front end (``cfg.audio``).

    Features of another front end (other mel bands, VAD or normalisation) would train or validate a model on
    inputs that inference never gives it, so a mismatch stops training before it starts.
    """
    expected = dataclasses.asdict(audio)
    for pool in pools:
        got = dataclasses.asdict(pool.cache.audio_config)
        diff = [f"{k}: {got[k]!r} in the cache, {v!r} in the config" for k, v in expected.items() if got.get(k) != v]
        if diff:
            raise ConfigError(
                f"{pool.cache.root}: features were prepared with another front end ({'; '.join(diff)}); "
                "prepare it with `ge2e prepare --config CONFIG` or set the config's audio section to match"
            )


def build_encoder(cfg: TrainConfig) -> SpeakerEncoder:
    """The untrained encoder a config describes: its model (or preset), front end and inference windows, which
    are the config's inference section or windows the length of the middle of the training crop range."""
    window = round((cfg.data.min_frames + cfg.data.max_frames) / 2)
    inference = cfg.inference if cfg.inference is not None else InferenceConfig(window_frames=window)
    return SpeakerEncoder(cfg.model or preset(cfg.preset), cfg.audio, inference)


def warm_start(encoder: SpeakerEncoder, path: str) -> None:
    """Copy a checkpoint's weights into ``encoder``; its architecture and front end must be the run's."""
    source = SpeakerEncoder.load(path)
    for name, mine, theirs in (("model", encoder.config, source.config), ("audio", encoder.audio, source.audio)):
        if mine != theirs:
            raise ConfigError(f"init {path}: its {name} config differs from this run's ({theirs} vs {mine})")
    encoder.load_state_dict(source.state_dict())


def build_optimizer(objective: Objective, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD or Adam over three parameter groups: the rest, the projections, and w and b.

    The paper's gradient scales (0.5 on projections, 0.01 on w and b) are gradient hooks, which is exactly what
    plain SGD needs. Adam divides every gradient by its own running magnitude, which cancels a constant scale,
    so with Adam the same factors are applied to the groups' learning rates instead. Group 0 is always the
    unscaled one (its rate is the one logged).
    """
    encoder, criterion = objective.encoder, objective.criterion
    projection = encoder.projection_parameters()
    scalars = [criterion.w, criterion.b]
    special = {id(p) for p in projection + scalars}
    rest = [p for p in objective.parameters() if id(p) not in special]
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(
            [{"params": rest}, {"params": projection}, {"params": scalars}], lr=o.lr, momentum=o.momentum
        )
    return torch.optim.Adam(
        [
            {"params": rest},
            {"params": projection, "lr": o.lr * encoder.config.proj_grad_scale},
            {"params": scalars, "lr": o.lr * cfg.loss.grad_scale},
        ],
        lr=o.lr,
    )


def native_bf16_cpu() -> bool:
    """Whether this CPU has bfloat16 instructions (avx512_bf16 or AMX), where oneDNN runs the LSTM in bf16.

    There, bf16 autocast makes a training step of the small preset about 1.6x faster (the loss stays float32);
    elsewhere bf16 would be emulated and slower, so autocast stays off.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu" if device_name == "auto" else device_name)


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def _truncate_csv(path: Path, last_step: int) -> None:
    """Drop rows logged after the checkpoint we resume from (they will be logged again)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= last_step]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows(kept)
    tmp.replace(path)


def _tensorboard(out: Path, start: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning("tensorboard is not installed (pip install 'ge2e[train]'); logging to CSV only")
        return None
    return SummaryWriter(str(out / "tensorboard"), purge_step=start or None)


def train(cfg: TrainConfig, progress: bool = True) -> SpeakerEncoder:
    """Train (or resume) a speaker encoder as ``cfg`` says; returns the trained encoder (unwrapped, on CPU)."""
    # ---- distributed setup and seeds ----------------------------------------------------------------------
    rank, world, device = _setup_distributed(cfg.device)
    main = rank == 0
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    out = Path(cfg.out_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")

    # ---- data: one pool of speakers per source (MultiReader when there are several) -------------------------
    pools = [SpeakerPool.from_source(s, cfg.data.min_utterances) for s in cfg.data.sources]
    weights = [s.weight for s in cfg.data.sources]
    val_pools = [SpeakerPool.from_source(s, 2) for s in cfg.val.sources] if main else []
    check_front_end(cfg.audio, pools + val_pools)

    # ---- model, loss, optimiser, schedule ---------------------------------------------------------------------
    encoder = build_encoder(cfg)
    objective = Objective(encoder, build_loss(cfg.loss), weights).to(device)
    params = list(objective.parameters())
    optimizer = build_optimizer(objective, cfg)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.optim.lr_halve_every, gamma=0.5)

    # ---- resume -------------------------------------------------------------------------------------------------
    start, best_eer, cpu_time = 0, math.inf, 0.0
    if (out / "last.pt").exists():
        state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        start, best_eer, cpu_time = state["step"], state["best_eer"], state.get("cpu_time", 0.0)
        if main:
            logger.info("resumed %s at step %d", out / "last.pt", start)
    elif cfg.init:
        warm_start(encoder, cfg.init)
        if main:
            logger.info("started from the weights of %s", cfg.init)
    model = nn.parallel.DistributedDataParallel(objective) if world > 1 else objective

    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(BatchDataset(pools, cfg.data, cfg.seed, rank, cfg.steps), range(start, cfg.steps)),
        batch_size=None,
        num_workers=cfg.data.num_workers,
        persistent_workers=cfg.data.num_workers > 0,
        prefetch_factor=4 if cfg.data.num_workers > 0 else None,
    )
    amp = cfg.amp and (device.type == "cuda" or (device.type == "cpu" and native_bf16_cpu()))
    if main:
        _truncate_csv(out / "metrics.csv", start)
    writer = _tensorboard(out, start) if main else None
    bar = tqdm(total=cfg.steps, initial=start, disable=not (main and progress), desc="train", dynamic_ncols=True)

    # ---- the loop -------------------------------------------------------------------------------------------------
    objective.train()
    wait_time = 0.0
    tick, cpu_tick = time.perf_counter(), time.process_time()
    over_budget = bool(cfg.cpu_budget_s) and cpu_time >= cfg.cpu_budget_s
    step = start
    for step, batches in enumerate([] if over_budget else loader, start=start + 1):
        wait_time += time.perf_counter() - tick
        batches = [b.to(device, non_blocking=True) for b in batches]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            total, losses = model(batches)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        lr = optimizer.param_groups[0]["lr"]  # the rate this step uses: the scheduler moves it on below
        optimizer.step()
        scheduler.step()

        row: dict[str, Any] = {"step": step, "loss": total.item(), "lr": lr}
        row.update({f"loss_{k}": v.item() for k, v in enumerate(losses)} if len(losses) > 1 else {})
        row.update(w=objective.criterion.w.item(), b=objective.criterion.b.item(), grad_norm=grad_norm.item())
        cpu_time += time.process_time() - cpu_tick
        over_budget = bool(cfg.cpu_budget_s) and cpu_time >= cfg.cpu_budget_s
        last = step == cfg.steps or over_budget
        row.update(data_wait=wait_time, time=time.perf_counter(), cpu_time=cpu_time, val_eer="")
        wait_time = 0.0
        if main and val_pools and (step % cfg.val.every == 0 or last):
            row["val_eer"] = float(np.mean([validation_eer(encoder, p, cfg.val.trials) for p in val_pools]))
            if row["val_eer"] < best_eer:
                best_eer = row["val_eer"]
                encoder.save(out / "best.pt", step=step, val_eer=best_eer, config=dataclasses.asdict(cfg))
        if main:
            _append_csv(out / "metrics.csv", row)
            if writer is not None:
                for key, value in row.items():
                    if key not in ("step", "time") and value != "":
                        writer.add_scalar(f"train/{key}", value, step)
            bar.set_postfix(loss=f"{row['loss']:.3f}", eer=f"{best_eer:.3f}" if best_eer < math.inf else "-")
            bar.update(1)
        if step % cfg.checkpoint_every == 0 or last:
            _checkpoint(out, step, objective, optimizer, scheduler, best_eer, cpu_time, world, main, cfg)
        if over_budget:
            if main:
                logger.info("CPU budget of %.0f s reached at step %d", cfg.cpu_budget_s, step)
            break
        tick, cpu_tick = time.perf_counter(), time.process_time()

    bar.close()
    if writer is not None:
        writer.close()
    if main:
        meta = {"step": step, "best_val_eer": best_eer, "cpu_time": cpu_time, "config": dataclasses.asdict(cfg)}
        encoder.save(out / "model.pt", **meta)
    return encoder.cpu()


def _checkpoint(
    out: Path,
    step: int,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    best_eer: float,
    cpu_time: float,
    world: int,
    main: bool,
    cfg: TrainConfig,
) -> None:
    """Write ``last.pt`` atomically on rank 0, with every rank's RNG state gathered."""
    states = [_rng_state()]
    if world > 1:
        states = [None] * world
        dist.all_gather_object(states, _rng_state())
    if main:
        atomic_torch_save(
            {
                "version": TRAIN_STATE_VERSION,
                "step": step,
                "objective": objective.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": states,
                "best_eer": best_eer,
                "cpu_time": cpu_time,
                "config": dataclasses.asdict(cfg),
            },
            out / "last.pt",
        )
    if world > 1:
        dist.barrier()

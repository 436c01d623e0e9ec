"""The DGSR fit loop: epochs of loader batches, validation, early stopping, resumable checkpoints.

* **Determinism**: one seed drives the model init, the epoch order (a numpy ``Generator``) and the
  negative draws (a ``torch.Generator``); on CPU two runs are bit-identical, with or without workers.
* **Length**: each epoch draws at most ``samples_per_epoch`` samples anew; the learning rate warms
  up, decays on every validation plateau, and training stops on ``patience`` plateaus, on
  ``max_epochs`` or on the ``max_samples`` budget (:class:`~gnn_recsys.training.config.TrainConfig`).
* **Weight average** (``train.ema_decay``, off by default): an exponential moving average of the
  weights (:class:`~gnn_recsys.training.ema.WeightAverage`) is what validation scores, what the best
  epoch keeps and what a run without validation returns; the optimiser steps the raw weights.
* **Resume**: after every epoch a checkpoint (model, optimiser, grad scaler, RNG states, history,
  best weights, weight average, early-stopping state, config hash) is written atomically. A rerun
  with the same config and data continues after the last finished epoch and equals an uninterrupted
  run (on CPU, exactly); a checkpoint from another device resumes too, with fresh random streams.
* **Distributed**: under ``torchrun`` (an initialised process group) the loss runs through
  DistributedDataParallel, each rank trains on its shard of the same epoch order
  (:func:`~gnn_recsys.training.ddp.shard_order`; ``batch_size`` is per rank), validation is sharded
  and its hits summed, so every rank takes the same early-stopping decision; only rank 0 writes the
  checkpoint, logs epochs and calls ``on_epoch_end``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnn_recsys.graph.cooccurrence import cooccurrence_embedding
from gnn_recsys.inference.recommend import recall_at_k
from gnn_recsys.loader.collate import SubgraphCollate, make_sampler
from gnn_recsys.loader.loaders import EpochBatches, make_loader
from gnn_recsys.loader.samples import SampleSet
from gnn_recsys.models.dgsr import DGSR
from gnn_recsys.models.loss import make_loss
from gnn_recsys.runtime import autocast, progress, resolve_device, share_cpu_with_workers
from gnn_recsys.training import ddp
from gnn_recsys.training.checkpoint import (
    CHECKPOINT_FILE,
    cpu_state,
    load_safely,
    prepare_checkpoint_dir,
    save_atomic,
)
from gnn_recsys.training.config import FitConfig
from gnn_recsys.training.early_stopping import StopState, early_stopping
from gnn_recsys.training.ema import WeightAverage
from gnn_recsys.training.optim import Optimizers, clip_grad_norm, learning_rate, make_optimizer

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """Outcome of :func:`train_dgsr`: the model with its best weights loaded, per-epoch history."""

    model: DGSR
    history: list[dict[str, float]]
    best_epoch: int
    best_metric: float | None = None
    start_epoch: int = 1  # first epoch run by this call (> 1 after a resume)
    stopped_early: bool = False
    config: FitConfig = field(default_factory=FitConfig)


def training_outputs(
    result: TrainResult, config: FitConfig, num_items: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``dgsr_model`` artifact (weights, model config, catalogue size: tensors and plain values only)
    and the ``dgsr_training_history`` a training writes, whoever ran it (Kedro node or ``torchrun``).

    The artifact carries the history too: the submission refit takes its length from it (reading it
    from the model keeps the pipeline's layers in order: 06_models never depends on 08_reporting).
    """
    history = {
        "best_epoch": result.best_epoch,
        "best_metric": result.best_metric,
        "start_epoch": result.start_epoch,
        "stopped_early": result.stopped_early,
        "loss": config.loss.resolve(num_items),
        "epochs": result.history,
    }
    artifact = {
        "model_config": config.model.to_dict(),
        "num_items": num_items,
        "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "history": copy.deepcopy(history),
    }
    return artifact, history


def train_step(
    model: DGSR,
    loss_fn: torch.nn.Module,
    optimizer: Optimizers,
    scaler: torch.amp.GradScaler,
    batch: Any,
    *,
    amp: Any,
    grad_clip: float | None,
    generator: torch.Generator | None,
    type_weights: Tensor | None = None,
    forward: Callable[..., Tensor] | None = None,
) -> Tensor:
    """One optimisation step on a batch already on the model's device; returns the detached loss.

    ``forward(batch, generator, type_weights)`` computes the loss instead of ``model.loss`` (the DDP
    wrapper of :func:`~gnn_recsys.training.ddp.wrap`, which all-reduces the gradients in backward).
    """
    with amp:
        if forward is None:
            loss = model.loss(batch, loss_fn, generator, type_weights)
        else:
            loss = forward(batch, generator, type_weights)
    optimizer.zero_grad()
    scaler.scale(loss).backward()
    if grad_clip is not None:
        optimizer.unscale_(scaler)
        clip_grad_norm(model, grad_clip)
    optimizer.step(scaler)
    scaler.update()
    return loss.detach()


@dataclass
class _Progress:
    """What the loop has learnt so far; saved in every checkpoint as plain values."""

    epoch: int = 0  # last finished epoch
    step: int = 0  # optimiser steps so far
    samples: int = 0  # training samples seen so far
    history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int = 0
    best_state: dict[str, Tensor] | None = None
    stale: int = 0  # evaluations since the best one
    decays: int = 0  # learning-rate decays so far
    stopped: bool = False

    def stop_state(self) -> StopState:
        return StopState(self.best_metric, self.best_epoch, self.stale, self.stopped)


def _state_fingerprint(state: dict[str, Tensor]) -> str:
    """Cheap hash of a state dict (names, shapes and up to 4096 evenly spaced values per tensor)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        flat = state[name].detach().reshape(-1).cpu()
        digest.update(f"{name}{tuple(state[name].shape)}".encode())
        digest.update(flat[:: max(1, flat.numel() // 4096)].float().numpy().tobytes())
    return digest.hexdigest()[:16]


def _fingerprint(  # noqa: PLR0913, PLR0917 - private; everything that makes a checkpoint another run's
    graph: Any,
    train: SampleSet,
    val: SampleSet | None,
    config: FitConfig,
    world: ddp.World,
    init_state: dict[str, Tensor] | None = None,
    lr_decay_after: tuple[int, ...] = (),
) -> str:
    parts = [
        config.config_hash(),
        str((graph.num_items, graph.num_sessions, graph.num_events)),
        train.fingerprint(),
        val.fingerprint() if val is not None else "-",
    ]
    if init_state is not None:  # a warm start: another starting point is another run
        parts.append(f"init={_state_fingerprint(init_state)}")
    if lr_decay_after:
        parts.append(f"decays={lr_decay_after}")
    if world.distributed:  # the global batch is batch_size x world size: another run
        parts.append(f"world={world.size}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@dataclass
class _Run:
    """Everything a training run mutates, with checkpoint save / restore."""

    model: DGSR
    optimizer: Optimizers
    scaler: torch.amp.GradScaler
    order_rng: np.random.Generator
    negative_rng: torch.Generator
    device: torch.device
    fingerprint: str
    world: ddp.World = ddp.World()
    forward: Callable[..., Tensor] | None = None  # the DDP-wrapped loss (None: one process)
    average: WeightAverage | None = None  # train.ema_decay: the weights validated and returned

    def averaged(self) -> contextlib.AbstractContextManager[None]:
        """Inside: the model holds the weight average (when there is one)."""
        return self.average.swapped_in() if self.average is not None else contextlib.nullcontext()

    def rng_state(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "order": self.order_rng.bit_generator.state,
            "negative": self.negative_rng.get_state(),
        }

    def save(self, state: _Progress, path: Path | None) -> None:
        """Write the checkpoint (rank 0; every rank must call it: it gathers their random states)."""
        rngs = ddp.gather_objects(self.rng_state(), self.world)
        if path is None or not self.world.main:
            return
        checkpoint = {
            "fingerprint": self.fingerprint,  # config hash + data identity: resume only if equal
            "device": self.device.type,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rngs[0],
            "progress": dict(vars(state)),
            "weight_average": self.average.state_dict() if self.average is not None else None,
        }
        if self.world.distributed:
            checkpoint["rank_rng"] = rngs  # each rank's own dropout and negative-sampling streams
        save_atomic(checkpoint, path)

    def restore(self, path: Path) -> _Progress | None:
        """Load ``path`` if it belongs to this run (same fingerprint); the progress, or None."""
        state = load_safely(path)
        if state.get("fingerprint") != self.fingerprint:
            logger.warning(
                "%s was written for another config or data (fingerprint %s, now %s): starting over",
                path,
                state.get("fingerprint"),
                self.fingerprint,
            )
            return None
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.average is not None:
            self.average.load_state_dict(state["weight_average"])
        rng = state["rank_rng"][self.world.rank] if self.world.distributed else state["rng"]
        torch.set_rng_state(rng["torch"])
        self.order_rng.bit_generator.state = rng["order"]
        if state["device"] == self.device.type:
            self.negative_rng.set_state(rng["negative"])
            if self.device.type == "cuda" and rng["cuda"] is not None:
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        else:  # generator states are device-specific: weights and optimiser carry over, draws restart
            logger.warning(
                "%s was written on %s, resuming on %s: negative sampling restarts its random stream",
                path,
                state["device"],
                self.device.type,
            )
        progress = _Progress(**state["progress"])
        if self.world.main:
            logger.info("Resuming DGSR training from %s after epoch %d", path, progress.epoch)
        return progress


def _train_epoch(  # noqa: PLR0917 - private; the loop's state, passed through
    run: _Run,
    loss_fn: torch.nn.Module,
    loader: Any,
    total: int,
    state: _Progress,
    config: FitConfig,
    epoch: int,
    amp: Any,
) -> tuple[float, int]:
    """One pass over the loader's batches; ``(mean loss, samples)``. Updates step/sample counters."""
    run.model.train()
    type_weights = torch.tensor(config.loss.type_weights, dtype=torch.float32, device=run.device)
    total_loss = torch.zeros((), dtype=torch.float64, device=run.device)  # on device: no sync per step
    seen = 0
    bar = progress(loader, config.train.progress, desc=f"epoch {epoch}", total=total)
    for host_batch in bar:
        run.optimizer.set_lr(learning_rate(config.train, state.step, state.decays))
        batch = host_batch.to(run.device, non_blocking=True)
        loss = train_step(
            run.model,
            loss_fn,
            run.optimizer,
            run.scaler,
            batch,
            amp=amp,
            grad_clip=config.train.grad_clip,
            generator=run.negative_rng,
            type_weights=type_weights,
            forward=run.forward,
        )
        if run.average is not None:
            run.average.update()
        total_loss += loss.double() * batch.num_samples
        seen += batch.num_samples
        state.step += 1
        if state.step % 50 == 0:
            bar.set_postfix(loss=f"{float(loss):.4f}")
    if run.world.distributed:  # the epoch's loss and sample count over all ranks
        summed, seen_all = ddp.all_reduce_sum([float(total_loss), float(seen)], run.device, run.world)
        total_loss, seen = torch.tensor(summed, dtype=torch.float64), int(seen_all)
    mean = float(total_loss) / max(seen, 1)
    if not math.isfinite(mean):
        raise FloatingPointError(f"DGSR training loss is {mean} in epoch {epoch}")
    state.samples += seen
    return mean, seen


def _epoch_order(
    rng: np.random.Generator, num_samples: int, config: FitConfig, samples_so_far: int
) -> np.ndarray:
    """This epoch's samples: a fresh random draw of at most ``samples_per_epoch``, within the budget."""
    size = num_samples
    if config.train.samples_per_epoch is not None:
        size = min(size, config.train.samples_per_epoch)
    if config.train.max_samples is not None:
        size = min(size, max(0, config.train.max_samples - samples_so_far))
    return rng.permutation(num_samples)[:size]


def _validate(
    model: DGSR, graph: Any, val: SampleSet, config: FitConfig, *, sampler: Any, world: ddp.World
) -> float:
    """Validation recall@``eval_k``; under DDP each rank scores every ``size``-th sample and the hits
    are summed, so all ranks get the same value (and take the same early-stopping decision)."""
    shard = val if not world.distributed else val.subset(slice(world.rank, None, world.size))
    recall = 0.0
    if len(shard):
        recall = recall_at_k(
            model,
            graph,
            shard,
            k=config.train.eval_k,
            batch_size=config.train.eval_batch_size or config.train.batch_size,
            loader=config.loader,
            sampler=sampler,
            amp=config.train.amp,
            show_progress=config.train.progress and world.main,
        )
    if not world.distributed:
        return recall
    device = next(model.parameters()).device
    (hits,) = ddp.all_reduce_sum([round(recall * len(shard))], device, world)
    return hits / len(val)


def train_dgsr(
    graph: Any,
    train_samples: SampleSet,
    val_samples: SampleSet | None,
    config: FitConfig,
    checkpoint_dir: str | Path | None = None,
    *,
    on_epoch_end: EpochCallback | None = None,
    sampler: Any = None,
    init_state: dict[str, Tensor] | None = None,
    lr_decay_after: tuple[int, ...] = (),
) -> TrainResult:
    """Train DGSR with early stopping on validation recall@``eval_k``; resume from ``checkpoint_dir``.

    ``on_epoch_end(epoch, metrics)`` (epochs 1-based) receives ``train_loss``, ``val_recall@K`` (when
    there is validation), ``lr``, ``train_samples_per_s`` and ``epoch_seconds``. ``sampler`` defaults
    to :func:`~gnn_recsys.loader.collate.make_sampler`.

    ``init_state``: start from these weights (a warm start) instead of a fresh initialisation.
    ``lr_decay_after``: without validation (no plateaus to detect), the learning rate decays once
    after each listed epoch (0 = before the first), e.g. to replay another run's schedule.

    Under an initialised process group (``torchrun``) this trains with DistributedDataParallel (see the
    module docstring); every rank must call it with the same data and config, and all return the
    same model. ``on_epoch_end`` runs on rank 0 only.
    """
    world = ddp.current_world()
    ddp.check_config(config.model.sparse_embedding, world)
    train_samples.validate(graph, "train_samples")
    if len(train_samples) == 0:
        raise ValueError("train_samples is empty")
    if val_samples is not None:
        val_samples.validate(graph, "val_samples")
        val_samples = val_samples if len(val_samples) else None
    if lr_decay_after and val_samples is not None:
        raise ValueError(
            "lr_decay_after replays a schedule without validation; with validation plateaus decay"
        )
    device = resolve_device(config.train.device)
    if world.distributed and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU (LOCAL_RANK)
    sampler = sampler if sampler is not None else make_sampler(graph, config.model)
    torch.manual_seed(config.train.seed)
    model = DGSR.from_config(graph.num_items, config.model)  # the same weights on every rank
    if init_state is not None:
        model.load_state_dict(init_state)
    elif config.train.item_init == "cooccurrence":  # seeded above: the same rows on every rank
        with torch.no_grad():
            model.item_embedding.weight.copy_(
                cooccurrence_embedding(
                    graph,
                    config.model.embedding_dim,
                    config.train.item_init_window,
                    max_events=config.train.item_init_max_events,
                )
            )
    model = model.to(device)
    if world.rank > 0:
        torch.manual_seed(config.train.seed + world.rank)  # its own dropout masks
    counts = np.bincount(train_samples.target, minlength=graph.num_items)
    loss_fn = make_loss(config.loss, counts, sparse=config.model.sparse_embedding).to(device)
    if world.main:
        logger.info(
            "DGSR loss: %s softmax over %d items", config.loss.resolve(graph.num_items), graph.num_items
        )
    amp, amp_dtype = autocast(device, config.train.amp)
    run = _Run(
        model=model,
        optimizer=make_optimizer(model, config.train),
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
        order_rng=np.random.default_rng(config.train.seed),
        # the same epoch order on every rank (each takes its shard), its own negatives
        negative_rng=torch.Generator(device=device).manual_seed(config.train.seed + 1 + world.rank),
        device=device,
        fingerprint=_fingerprint(
            graph, train_samples, val_samples, config, world, init_state, tuple(lr_decay_after)
        ),
        world=world,
        average=WeightAverage(model, config.train.ema_decay) if config.train.ema_decay else None,
    )
    checkpoint_path = None
    if world.main:
        checkpoint_path = prepare_checkpoint_dir(checkpoint_dir)
    elif checkpoint_dir is not None:
        checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_FILE
    ddp.barrier(world)  # rank 0 has created the folder and removed torn files
    state = None
    if checkpoint_path is not None and checkpoint_path.exists():
        state = run.restore(checkpoint_path)
    state = state or _Progress()
    if world.distributed:
        resumed = ddp.gather_objects(state.epoch, world)
        if len(set(resumed)) > 1:
            raise RuntimeError(
                f"ranks resumed after different epochs {resumed}: every rank must read rank 0's "
                f"checkpoint in {checkpoint_dir} (a file system shared by all machines)"
            )
        untyped = model.type_head is not None and train_samples.target_type is None  # heads unused
        run.forward = ddp.wrap(model, loss_fn, device, find_unused=untyped)

    metric_name = f"val_recall@{config.train.eval_k}"
    collate = SubgraphCollate(graph, train_samples, config.model, sampler=sampler)
    batches = EpochBatches(len(train_samples), config.train.batch_size)
    workers = config.loader.workers()
    loader = make_loader(collate, batches, config.loader, device)
    start_epoch = state.epoch + 1
    with share_cpu_with_workers(device, workers):
        for epoch in range(start_epoch, config.train.max_epochs + 1):
            if state.stopped:
                break
            order = ddp.shard_order(
                _epoch_order(run.order_rng, len(train_samples), config, state.samples), world
            )
            if len(order) == 0:
                if world.main:
                    logger.info("DGSR training budget of %s samples spent", config.train.max_samples)
                break
            if val_samples is None and lr_decay_after:
                state.decays = sum(1 for after in lr_decay_after if after < epoch)
            t0 = time.perf_counter()
            batches.new_epoch(order)
            train_loss, seen = _train_epoch(run, loss_fn, loader, len(batches), state, config, epoch, amp)
            seconds = time.perf_counter() - t0
            lr = learning_rate(config.train, state.step - 1, state.decays)  # the epoch's last step
            metrics = {
                "train_loss": train_loss,
                "lr": lr,
                "train_samples_per_s": seen / seconds,
                "epoch_seconds": seconds,
            }
            if val_samples is not None:
                with run.averaged():
                    recall = _validate(model, graph, val_samples, config, sampler=sampler, world=world)
                    metrics[metric_name] = recall
                    stop = early_stopping(state.stop_state(), epoch, recall, config.train.patience)
                    if state.step < config.train.min_steps:  # too early for a plateau: keep the best only
                        stop = replace(stop, stale=0, stop=False)
                    if stop.best_epoch == epoch:
                        state.best_state = cpu_state(model)  # the weights just validated
                    elif not stop.stop and stop.stale:
                        state.decays += 1  # plateau: continue with a smaller step
                state.best_metric, state.best_epoch, state.stale, state.stopped = (
                    stop.best_metric,
                    stop.best_epoch,
                    stop.stale,
                    stop.stop,
                )
            else:
                state.best_epoch = epoch  # no validation: the last epoch is the result
            state.epoch = epoch
            state.history.append({"epoch": float(epoch), **metrics})
            if world.main:
                logger.info("DGSR epoch %d: %s", epoch, {k: round(v, 5) for k, v in metrics.items()})
            if checkpoint_path is not None:
                run.save(state, checkpoint_path)
            if on_epoch_end is not None and world.main:
                on_epoch_end(epoch, dict(metrics))
            if state.stopped and world.main:
                logger.info(
                    "Early stopping after epoch %d: best %s %.5f at epoch %d",
                    epoch,
                    metric_name,
                    state.best_metric,
                    state.best_epoch,
                )
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    elif run.average is not None:  # no validation: the average after the last step is the result
        run.average.copy_to_model()
    model.eval()
    return TrainResult(
        model=model,
        history=copy.deepcopy(state.history),
        best_epoch=state.best_epoch,
        best_metric=state.best_metric,
        start_epoch=start_epoch,
        stopped_early=state.stopped,
        config=config,
    )

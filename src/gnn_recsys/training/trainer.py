"""DGSR training loop, resumable checkpoints, validation and blocked top-K inference.

Plain PyTorch, no Kedro: the Kedro node calls :func:`train_dgsr` and logs what ``on_epoch_end`` receives.

* **Samples** (:class:`SampleSet`): ``(session index, cut_ts, target item index)``; the subgraph of a
  sample only uses events with ``ts < cut_ts``. ``SampleSet(*training_samples(graph, ...))`` (from
  :mod:`gnn_recsys.graph.sampler`) makes one per predictable event.
* **Batches** are built inside ``DataLoader`` workers (a dataset of *batch indices* that calls the
  temporal sampler and :func:`~gnn_recsys.models.dgsr.make_batch`), so sampling overlaps training.
* **Determinism**: one seed drives the model init (``torch.manual_seed``), the epoch order (a numpy
  ``Generator``) and the negative draws (a ``torch.Generator``); on CPU two runs are bit-identical.
* **Resume**: after every epoch a checkpoint (model, optimizer, grad scaler, all RNG states, history,
  best weights, early-stopping state, config hash) is written atomically (temporary file +
  ``os.replace``). A rerun with the same config hash continues after the last finished epoch, so a
  killed run loses at most one epoch, and the result equals an uninterrupted run (on CPU, exactly).
* **Inference** (:func:`recommend`): one representation per session at ``cut_ts = last ts + 1``, top-K
  over the full catalogue in item blocks (``torch.topk`` per block, merged), so memory is bounded by
  ``batch_size x block_size`` whatever the catalogue size.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from gnn_recsys.graph.sampler import TemporalSubgraphSampler, inference_samples
from gnn_recsys.models.dgsr import DGSR, DGSRBatch, make_batch
from gnn_recsys.models.loss import make_loss
from gnn_recsys.training.config import TrainConfig

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.pt"
EpochCallback = Callable[[int, dict[str, float]], None]


# --------------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleSet:
    """Training / validation samples: predict item ``target`` for ``session`` from events before ``cut_ts``."""

    session: np.ndarray  # int64 session index
    cut_ts: np.ndarray  # int64 Unix ms
    target: np.ndarray  # int64 item index

    def __post_init__(self) -> None:
        n = len(self.session)
        if len(self.cut_ts) != n or len(self.target) != n:
            raise ValueError(
                f"SampleSet arrays differ in length: session {n}, cut_ts {len(self.cut_ts)}, "
                f"target {len(self.target)}"
            )
        for name in ("session", "cut_ts", "target"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.session)

    def subset(self, index: np.ndarray | slice) -> SampleSet:
        return SampleSet(self.session[index], self.cut_ts[index], self.target[index])

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> SampleSet:
        """From a frame with integer columns ``session`` (index), ``cut_ts``, ``target`` (item index)."""
        missing = [c for c in ("session", "cut_ts", "target") if c not in frame.columns]
        if missing:
            raise ValueError(f"sample frame lacks column(s) {missing}; has {frame.columns}")
        for c in ("session", "cut_ts", "target"):
            nulls = frame[c].null_count()
            if nulls:
                raise ValueError(
                    f"sample frame column {c!r} has {nulls} null(s), first at row {frame[c].is_null().arg_max()}"
                )
        return cls(frame["session"].to_numpy(), frame["cut_ts"].to_numpy(), frame["target"].to_numpy())

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame({"session": self.session, "cut_ts": self.cut_ts, "target": self.target})

    def validate(self, graph: Any, name: str = "samples") -> None:
        """Raise ``ValueError`` naming the first sample (row) whose session or target is out of range."""
        checks = {
            "session": (self.session < 0) | (self.session >= graph.num_sessions),
            "target": (self.target < 0) | (self.target >= graph.num_items),
        }
        for column, bad in checks.items():
            if bad.any():
                row = int(np.argmax(bad))
                raise ValueError(
                    f"{name}: row {row} field {column!r} = {getattr(self, column)[row]} is outside the graph "
                    f"({graph.num_sessions} sessions, {graph.num_items} items)"
                )

    def fingerprint(self) -> str:
        """Cheap content hash (length + up to 1M evenly spaced rows) to tie checkpoints to their data."""
        n = len(self)
        step = max(1, n // 1_000_000)
        digest = hashlib.sha256(str(n).encode())
        for array in (self.session, self.cut_ts, self.target):
            digest.update(np.ascontiguousarray(array[::step]).tobytes())
        return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Sampler, model and data loading
# --------------------------------------------------------------------------------------------------


def make_sampler(graph: Any, config: TrainConfig) -> Any:
    """The temporal subgraph sampler of ``gnn_recsys.graph.sampler`` for this config."""
    return TemporalSubgraphSampler(
        graph,
        item_max_length=config.item_max_length,
        user_max_length=config.user_max_length,
        k_hop=config.k_hop,
        context_window=config.context_window,
    )


def build_model(num_items: int, config: TrainConfig) -> DGSR:
    """A freshly initialised :class:`DGSR` for ``config``."""
    return DGSR(
        num_items=num_items,
        embedding_dim=config.embedding_dim,
        num_layers=config.k_hop,
        item_max_length=config.item_max_length,
        user_max_length=config.user_max_length,
        dropout=config.dropout,
        attn_dropout=config.attn_dropout,
        readout_last_item=config.readout_last_item,
        attention=config.attention,
        context_window=config.context_window,
    )


class SubgraphBatches(Dataset[DGSRBatch]):
    """Item ``i`` = model batch of the samples ``order[i*B:(i+1)*B]``, sampled on access (in a worker)."""

    def __init__(
        self,
        graph: Any,
        sampler: Any,
        samples: SampleSet,
        batch_size: int,
        *,
        num_layers: int,
        context_window: tuple[int, int],
        with_target: bool = True,
    ) -> None:
        self.graph = graph
        self.sampler = sampler
        self.samples = samples
        self.batch_size = batch_size
        self.num_layers = num_layers
        self.context_window = context_window
        self.with_target = with_target
        self.order = np.arange(len(samples), dtype=np.int64)

    def set_order(self, order: np.ndarray) -> None:
        """Sample indices to visit, in order (set before creating the epoch's iterator)."""
        self.order = np.asarray(order, dtype=np.int64)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __getitem__(self, i: int) -> DGSRBatch:
        rows = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        session, cut_ts = self.samples.session[rows], self.samples.cut_ts[rows]
        subgraph = self.sampler.sample(session, cut_ts)
        target = self.samples.target[rows] if self.with_target else None
        return make_batch(
            self.graph, subgraph, cut_ts, self.num_layers, context_window=self.context_window, target=target
        )


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


@contextlib.contextmanager
def _share_cpu_with_workers(device: torch.device, num_workers: int) -> Iterator[None]:
    """On CPU, leave one core per loader worker: torch's OpenMP threads spin while waiting and would
    otherwise starve the sampling workers (measured: 10x slower epochs on 2 cores with 1 worker)."""
    if device.type != "cpu" or num_workers == 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) - num_workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _loader(dataset: SubgraphBatches, num_workers: int, device: torch.device, seed: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=_worker_init if num_workers > 0 else None,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _autocast(
    device: torch.device, enabled: bool
) -> tuple[contextlib.AbstractContextManager, torch.dtype | None]:
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype), dtype


def _progress(iterable: Any, enabled: bool, **kwargs: Any) -> Any:
    return tqdm(iterable, disable=not (enabled and sys.stderr.isatty()), leave=False, **kwargs)


# --------------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------------


def topk_blocked(
    query: Tensor, item_embedding: Tensor, k: int, block_size: int = 65_536
) -> tuple[Tensor, Tensor]:
    """Top-``k`` items (indices, scores) of ``query @ item_embedding.T`` scanning the items in blocks.

    Memory is ``[B, block_size + k]`` instead of ``[B, num_items]``; ties keep the lower item index
    first within a block (``torch.topk`` order), and merging is exact.
    """
    n_items = item_embedding.shape[0]
    k = min(k, n_items)
    best_score = query.new_full((query.shape[0], 0), float("-inf"), dtype=torch.float32)
    best_index = torch.zeros((query.shape[0], 0), dtype=torch.long, device=query.device)
    for start in range(0, n_items, block_size):
        block = item_embedding[start : start + block_size]
        scores = (query @ block.to(query.dtype).T).float()
        top_score, top_index = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        merged_score = torch.cat([best_score, top_score], dim=1)
        merged_index = torch.cat([best_index, top_index + start], dim=1)
        best_score, pick = torch.topk(merged_score, min(k, merged_score.shape[1]), dim=1)
        best_index = torch.gather(merged_index, 1, pick)
    return best_index, best_score


@torch.no_grad()
def encode_sessions(
    model: DGSR,
    graph: Any,
    sessions: np.ndarray,
    cut_ts: np.ndarray,
    sampler: Any,
    *,
    context_window: tuple[int, int],
    batch_size: int = 512,
    device: torch.device | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> Iterator[Tensor]:
    """Yield session representations ``[<=batch_size, d]`` (on ``device``) batch after batch, in order."""
    device = device or next(model.parameters()).device
    samples = SampleSet(sessions, cut_ts, np.zeros(len(sessions), dtype=np.int64))
    dataset = SubgraphBatches(
        graph,
        sampler,
        samples,
        batch_size,
        num_layers=model.num_layers,
        context_window=context_window,
        with_target=False,
    )
    was_training = model.training
    model.eval()
    amp, _ = _autocast(device, True)
    try:
        with _share_cpu_with_workers(device, num_workers):
            for batch in _progress(_loader(dataset, num_workers, device, 0), progress, desc="encode"):
                with amp:
                    yield model(batch.to(device, non_blocking=True)).float()
    finally:
        model.train(was_training)


def recommend(  # noqa: PLR0917 - (model, graph, sessions, k, batch_size, block_size) read naturally
    model: DGSR,
    graph: Any,
    session_indices: np.ndarray,
    k: int = 50,
    batch_size: int = 512,
    block_size: int = 65_536,
    *,
    sampler: Any = None,
    context_window: tuple[int, int] | None = None,
    return_aids: bool = True,
    num_workers: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of the full catalogue for each session, predicted after its last observed event.

    Returns ``(items [n, k], scores [n, k])``, best first; ``items`` are aids (``graph.item_aid``) or,
    with ``return_aids=False``, item indices. Works on the model's device (GPU included).
    """
    session_indices = np.asarray(session_indices, dtype=np.int64)
    context_window = context_window or model.context_window
    if sampler is None:
        sampler = make_sampler(graph, _config_of(model))
    device = next(model.parameters()).device
    session_indices, cut_ts = inference_samples(graph, session_indices)
    item_parts, score_parts = [], []
    embedding = model.item_embedding.weight.detach()
    for reps in encode_sessions(
        model,
        graph,
        session_indices,
        cut_ts,
        sampler,
        context_window=context_window,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        progress=progress,
    ):
        index, score = topk_blocked(reps, embedding.float(), k, block_size)
        item_parts.append(index.cpu().numpy())
        score_parts.append(score.cpu().numpy())
    k_eff = min(k, graph.num_items)
    items = np.concatenate(item_parts) if item_parts else np.zeros((0, k_eff), dtype=np.int64)
    scores = np.concatenate(score_parts) if score_parts else np.zeros((0, k_eff), dtype=np.float32)
    if return_aids:
        items = np.asarray(graph.item_aid)[items]
    return items, scores


def _config_of(model: DGSR) -> TrainConfig:
    hp = model.hyperparameters()
    return TrainConfig(
        embedding_dim=hp["embedding_dim"],
        k_hop=hp["num_layers"],
        item_max_length=hp["item_max_length"],
        user_max_length=hp["user_max_length"],
        context_window=tuple(hp["context_window"]),
    )


@torch.no_grad()
def recall_at_k(
    model: DGSR,
    graph: Any,
    samples: SampleSet,
    sampler: Any,
    *,
    context_window: tuple[int, int],
    k: int = 20,
    batch_size: int = 512,
    block_size: int = 65_536,
    num_workers: int = 0,
    progress: bool = False,
) -> float:
    """Share of samples whose target is in the top ``k`` of the full catalogue (``nan`` if no samples)."""
    if len(samples) == 0:
        return float("nan")
    device = next(model.parameters()).device
    embedding = model.item_embedding.weight.detach().float()
    hits = 0
    start = 0
    for reps in encode_sessions(
        model,
        graph,
        samples.session,
        samples.cut_ts,
        sampler,
        context_window=context_window,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        progress=progress,
    ):
        index, _ = topk_blocked(reps, embedding, k, block_size)
        target = torch.as_tensor(samples.target[start : start + reps.shape[0]], device=device)
        hits += int((index == target.unsqueeze(1)).any(dim=1).sum())
        start += reps.shape[0]
    return hits / len(samples)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """Outcome of :func:`train_dgsr`: the model with its best weights loaded, per-epoch history."""

    model: DGSR
    history: list[dict[str, float]]
    best_epoch: int
    best_metric: float | None = None
    start_epoch: int = 1  # first epoch run by this call (> 1 after a resume)
    stopped_early: bool = False
    config: TrainConfig = field(default_factory=TrainConfig)


def _make_optimizer(model: DGSR, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _run_fingerprint(graph: Any, train: SampleSet, val: SampleSet | None, config: TrainConfig) -> str:
    parts = [
        config.config_hash(),
        str((graph.num_items, graph.num_sessions, graph.num_events)),
        train.fingerprint(),
        val.fingerprint() if val is not None else "-",
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _cpu_state(model: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train_step(
    model: DGSR,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch: DGSRBatch,
    *,
    amp: contextlib.AbstractContextManager,
    grad_clip: float | None,
    generator: torch.Generator | None,
) -> Tensor:
    """One optimisation step on a batch already on the model's device; returns the detached loss."""
    assert batch.target is not None
    with amp:
        reps = model(batch)
        loss = loss_fn(reps, batch.target, model.item_embedding.weight, generator)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def train_dgsr(
    graph: Any,
    train_samples: SampleSet,
    val_samples: SampleSet | None,
    config: TrainConfig,
    checkpoint_dir: str | Path | None = None,
    *,
    on_epoch_end: EpochCallback | None = None,
    sampler: Any = None,
) -> TrainResult:
    """Train DGSR with early stopping on validation recall@``eval_k``; resume from ``checkpoint_dir``.

    ``on_epoch_end(epoch, metrics)`` receives ``train_loss``, ``val_recall@K`` (on evaluated epochs),
    ``train_samples_per_s`` and ``epoch_seconds``. ``sampler`` defaults to :func:`make_sampler`.
    """
    train_samples.validate(graph, "train_samples")
    if val_samples is not None:
        val_samples.validate(graph, "val_samples")
        if len(val_samples) == 0:
            val_samples = None
    if len(train_samples) == 0:
        raise ValueError("train_samples is empty")
    device = resolve_device(config.device)
    sampler = sampler if sampler is not None else make_sampler(graph, config)
    torch.manual_seed(config.seed)
    order_rng = np.random.default_rng(config.seed)
    negative_rng = torch.Generator(device=device).manual_seed(config.seed + 1)

    model = build_model(graph.num_items, config).to(device)
    item_counts = np.bincount(train_samples.target, minlength=graph.num_items)
    loss_fn = make_loss(
        config.loss,
        item_counts,
        num_negatives=config.num_negatives,
        alpha=config.negative_alpha,
        uniform_mix=config.negative_uniform_mix,
        in_batch=config.in_batch_negatives,
    ).to(device)
    optimizer = _make_optimizer(model, config)
    amp, amp_dtype = _autocast(device, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    metric_name = f"val_recall@{config.eval_k}"

    history: list[dict[str, float]] = []
    best_metric: float | None = None
    best_epoch = 0
    best_state: dict[str, Tensor] | None = None
    stale = 0
    stopped = False
    done_epochs = 0
    fingerprint = _run_fingerprint(graph, train_samples, val_samples, config)
    checkpoint_path = None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        checkpoint_path = checkpoint_dir / CHECKPOINT_FILE
        if checkpoint_path.exists():
            state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
            if state.get("fingerprint") != fingerprint:
                logger.warning(
                    "%s was written for another config/data (hash %s, now %s): starting over",
                    checkpoint_path,
                    state.get("fingerprint"),
                    fingerprint,
                )
            else:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scaler.load_state_dict(state["scaler"])
                torch.set_rng_state(state["rng"]["torch"])
                if device.type == "cuda" and state["rng"].get("cuda") is not None:
                    torch.cuda.set_rng_state(state["rng"]["cuda"], device)
                order_rng.bit_generator.state = state["rng"]["order"]
                negative_rng.set_state(state["rng"]["negative"])
                history = state["history"]
                best_metric, best_epoch, best_state = (
                    state["best_metric"],
                    state["best_epoch"],
                    state["best_state"],
                )
                stale, stopped, done_epochs = state["stale"], state["stopped"], state["epoch"]
                logger.info("Resuming DGSR training from %s after epoch %d", checkpoint_path, done_epochs)

    dataset = SubgraphBatches(
        graph,
        sampler,
        train_samples,
        config.batch_size,
        num_layers=config.k_hop,
        context_window=config.context_window,
    )
    eval_batch = config.eval_batch_size or config.batch_size
    start_epoch = done_epochs + 1
    for epoch in range(start_epoch, config.epochs + 1):
        if stopped:
            break
        t0 = time.perf_counter()
        order = order_rng.permutation(len(train_samples))
        if config.max_train_samples_per_epoch is not None:
            order = order[: config.max_train_samples_per_epoch]
        dataset.set_order(order)
        model.train()
        total_loss = torch.zeros((), dtype=torch.float64, device=device)  # summed on device: no sync per step
        total_n = 0
        loader = _loader(dataset, config.num_workers, device, config.seed + epoch)
        bar = _progress(loader, config.progress, desc=f"epoch {epoch}", total=len(dataset))
        with _share_cpu_with_workers(device, config.num_workers):
            for step, host_batch in enumerate(bar):
                batch = host_batch.to(device, non_blocking=True)
                loss = train_step(
                    model,
                    loss_fn,
                    optimizer,
                    scaler,
                    batch,
                    amp=amp,
                    grad_clip=config.grad_clip,
                    generator=negative_rng,
                )
                total_loss += loss.double() * batch.num_samples
                total_n += batch.num_samples
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{float(loss):.4f}")
        seconds = time.perf_counter() - t0
        train_loss = float(total_loss) / max(total_n, 1)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"DGSR training loss is {train_loss} in epoch {epoch}")
        metrics: dict[str, float] = {
            "train_loss": train_loss,
            "train_samples_per_s": total_n / seconds if seconds > 0 else float("nan"),
            "epoch_seconds": seconds,
        }
        if val_samples is not None and epoch % config.eval_every == 0:
            recall = recall_at_k(
                model,
                graph,
                val_samples,
                sampler,
                context_window=config.context_window,
                k=config.eval_k,
                batch_size=eval_batch,
                num_workers=config.num_workers,
                progress=config.progress,
            )
            metrics[metric_name] = recall
            if best_metric is None or recall > best_metric:
                best_metric, best_epoch, best_state, stale = recall, epoch, _cpu_state(model), 0
            else:
                stale += 1
                stopped = stale >= config.patience
        elif val_samples is None:
            best_epoch, best_state = epoch, None
        history.append({"epoch": float(epoch), **metrics})
        logger.info("DGSR epoch %d: %s", epoch, {k: round(v, 5) for k, v in metrics.items()})
        if checkpoint_path is not None:
            _atomic_save(
                {
                    "fingerprint": fingerprint,
                    "config": config.to_dict(),
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": {
                        "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                        "order": order_rng.bit_generator.state,
                        "negative": negative_rng.get_state(),
                    },
                    "history": history,
                    "best_metric": best_metric,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "stale": stale,
                    "stopped": stopped,
                },
                checkpoint_path,
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, dict(metrics))
        if stopped:
            logger.info(
                "Early stopping after epoch %d (best %s = %.5f at epoch %d)",
                epoch,
                metric_name,
                best_metric or 0,
                best_epoch,
            )
    if best_state is not None:
        model.load_state_dict(best_state)
    if best_epoch == 0 and history:
        best_epoch = int(history[-1]["epoch"])
    model.eval()
    return TrainResult(
        model=model,
        history=copy.deepcopy(history),
        best_epoch=best_epoch,
        best_metric=best_metric,
        start_epoch=start_epoch,
        stopped_early=stopped,
        config=config,
    )

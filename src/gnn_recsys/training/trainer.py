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
from gnn_recsys.models.dgsr import DGSR, NUM_EVENT_TYPES, DGSRBatch, make_batch
from gnn_recsys.models.loss import add_history_bonus, make_loss
from gnn_recsys.training.config import TrainConfig

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.pt"
EpochCallback = Callable[[int, dict[str, float]], None]


# --------------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleSet:
    """Training / validation samples: predict item ``target`` for ``session`` from events before ``cut_ts``.

    ``target_type`` (optional) is the event type of the target event (0 clicks, 1 carts, 2 orders); a
    model with type heads trains each sample through the head of its target's type.
    """

    session: np.ndarray  # int64 session index
    cut_ts: np.ndarray  # int64 Unix ms
    target: np.ndarray  # int64 item index
    target_type: np.ndarray | None = None  # int64 event type code of the target event

    def __post_init__(self) -> None:
        n = len(self.session)
        lengths = {name: len(getattr(self, name)) for name in self._columns()}
        if any(length != n for length in lengths.values()):
            raise ValueError(f"SampleSet arrays differ in length: {lengths}")
        for name in self._columns():
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64))

    def _columns(self) -> tuple[str, ...]:
        return ("session", "cut_ts", "target") + (("target_type",) if self.target_type is not None else ())

    def __len__(self) -> int:
        return len(self.session)

    def subset(self, index: np.ndarray | slice) -> SampleSet:
        return SampleSet(*(getattr(self, name)[index] for name in self._columns()))

    @classmethod
    def from_events(cls, graph: Any, events: np.ndarray) -> SampleSet:
        """Typed next-event samples: each event predicted from everything before its own time."""
        return cls.from_cut_events(graph, events, events)

    @classmethod
    def from_cut_events(cls, graph: Any, cut_events: np.ndarray, target_events: np.ndarray) -> SampleSet:
        """Typed samples predicting ``target_events`` from everything before ``cut_events``' times."""
        target_events = np.asarray(target_events, dtype=np.int64)
        return cls(
            graph.ev_session()[target_events],
            np.asarray(graph.ev_ts)[np.asarray(cut_events, dtype=np.int64)],
            np.asarray(graph.ev_item)[target_events],
            np.asarray(graph.ev_type)[target_events],
        )

    @classmethod
    def concat(cls, parts: list[SampleSet]) -> SampleSet:
        columns = parts[0]._columns()
        return cls(*(np.concatenate([getattr(part, name) for part in parts]) for name in columns))

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> SampleSet:
        """From integer columns ``session`` (index), ``cut_ts``, ``target`` (item index), [``target_type``]."""
        missing = [c for c in ("session", "cut_ts", "target") if c not in frame.columns]
        if missing:
            raise ValueError(f"sample frame lacks column(s) {missing}; has {frame.columns}")
        columns = [c for c in ("session", "cut_ts", "target", "target_type") if c in frame.columns]
        for c in columns:
            nulls = frame[c].null_count()
            if nulls:
                raise ValueError(
                    f"sample frame column {c!r} has {nulls} null(s), first at row {frame[c].is_null().arg_max()}"
                )
        return cls(*(frame[c].to_numpy() for c in columns))

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame({name: getattr(self, name) for name in self._columns()})

    def validate(self, graph: Any, name: str = "samples") -> None:
        """Raise ``ValueError`` naming the first sample (row) whose session, target or type is out of range."""
        checks = {
            "session": (self.session < 0) | (self.session >= graph.num_sessions),
            "target": (self.target < 0) | (self.target >= graph.num_items),
        }
        if self.target_type is not None:
            checks["target_type"] = (self.target_type < 0) | (self.target_type >= NUM_EVENT_TYPES)
        for column, bad in checks.items():
            if bad.any():
                row = int(np.argmax(bad))
                raise ValueError(
                    f"{name}: row {row} field {column!r} = {getattr(self, column)[row]} is out of range "
                    f"({graph.num_sessions} sessions, {graph.num_items} items, {NUM_EVENT_TYPES} event types)"
                )

    def fingerprint(self) -> str:
        """Cheap content hash (length + up to 1M evenly spaced rows) to tie checkpoints to their data."""
        n = len(self)
        step = max(1, n // 1_000_000)
        digest = hashlib.sha256(str(n).encode())
        for name in self._columns():
            digest.update(np.ascontiguousarray(getattr(self, name)[::step]).tobytes())
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
        sparse_embedding=config.sparse_embedding,
        type_heads=config.type_heads,
        repeat_bonus=config.repeat_bonus,
        history_length=config.history_length if config.repeat_bonus else None,
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
        history_length: int | None = None,
    ) -> None:
        self.graph = graph
        self.sampler = sampler
        self.samples = samples
        self.batch_size = batch_size
        self.num_layers = num_layers
        self.context_window = context_window
        self.with_target = with_target
        self.history_length = history_length
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
        target_type = self.samples.target_type
        return make_batch(
            self.graph,
            subgraph,
            cut_ts,
            self.num_layers,
            context_window=self.context_window,
            target=target,
            target_type=target_type[rows] if self.with_target and target_type is not None else None,
            history_length=self.history_length,
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
    query: Tensor,
    item_embedding: Tensor,
    k: int,
    block_size: int = 65_536,
    history: tuple[Tensor, Tensor] | None = None,
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
        scores = add_history_bonus((query @ block.to(query.dtype).T).float(), history, offset=start)
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
) -> Iterator[tuple[Tensor, DGSRBatch]]:
    """Yield ``(representations [<=batch_size, d], model batch)`` on ``device``, batch after batch, in order."""
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
        history_length=model.history_length,
    )
    was_training = model.training
    model.eval()
    amp, _ = _autocast(device, True)
    try:
        with _share_cpu_with_workers(device, num_workers):
            for batch in _progress(_loader(dataset, num_workers, device, 0), progress, desc="encode"):
                batch = batch.to(device, non_blocking=True)  # noqa: PLW2901 - the same batch, on device
                with amp:
                    reps = model(batch).float()
                yield reps, batch
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
    event_type: int | None = None,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of the full catalogue for each session, predicted after its last observed event.

    Returns ``(items [n, k], scores [n, k])``, best first; ``items`` are aids (``graph.item_aid``) or,
    with ``return_aids=False``, item indices. ``event_type`` picks a type head (None: the shared
    representation). Works on the model's device (GPU included). ``options``: see
    :func:`recommend_by_type`.
    """
    lists = recommend_by_type(
        model, graph, session_indices, k, batch_size, block_size, event_types=(event_type,), **options
    )
    return lists[event_type]


@torch.no_grad()
def recommend_by_type(  # noqa: PLR0917
    model: DGSR,
    graph: Any,
    session_indices: np.ndarray,
    k: int = 50,
    batch_size: int = 512,
    block_size: int = 65_536,
    *,
    event_types: tuple[int | None, ...] = (0, 1, 2),
    sampler: Any = None,
    context_window: tuple[int, int] | None = None,
    return_aids: bool = True,
    num_workers: int = 0,
    progress: bool = False,
) -> dict[int | None, tuple[np.ndarray, np.ndarray]]:
    """Top-``k`` lists per event type, encoding every session once and scoring it with each type head.

    Memory stays bounded: sessions go through in batches and the catalogue in blocks of ``block_size``.
    """
    session_indices = np.asarray(session_indices, dtype=np.int64)
    context_window = context_window or model.context_window
    if sampler is None:
        sampler = make_sampler(graph, _config_of(model))
    device = next(model.parameters()).device
    session_indices, cut_ts = inference_samples(graph, session_indices)
    parts: dict[int | None, tuple[list[np.ndarray], list[np.ndarray]]] = {t: ([], []) for t in event_types}
    embedding = model.item_embedding.weight.detach().float()
    for reps, batch in encode_sessions(
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
        for event_type, (items, scores) in parts.items():
            query = reps if event_type is None else model.typed(reps, event_type)
            bonus = model.history_bonus(batch, event_type)
            history = None if bonus is None else (batch.history_item, bonus.float())
            index, score = topk_blocked(query, embedding, k, block_size, history=history)
            items.append(index.cpu().numpy())
            scores.append(score.cpu().numpy())
    k_eff = min(k, graph.num_items)
    result = {}
    for event_type, (items, scores) in parts.items():
        item_matrix = np.concatenate(items) if items else np.zeros((0, k_eff), dtype=np.int64)
        score_matrix = np.concatenate(scores) if scores else np.zeros((0, k_eff), dtype=np.float32)
        if return_aids:
            item_matrix = np.asarray(graph.item_aid)[item_matrix]
        result[event_type] = (item_matrix, score_matrix)
    return result


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
    for reps, batch in encode_sessions(
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
        rows = slice(start, start + reps.shape[0])
        query, target_type = reps, None
        if samples.target_type is not None:
            target_type = torch.as_tensor(samples.target_type[rows], device=device)
            query = model.typed(reps, target_type)
        bonus = model.history_bonus(batch, target_type)
        history = None if bonus is None else (batch.history_item, bonus.float())
        index, _ = topk_blocked(query, embedding, k, block_size, history=history)
        target = torch.as_tensor(samples.target[rows], device=device)
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


class Optimizers:
    """The optimiser(s) of a model, stepped together: one for all parameters, or -- with a sparse item
    embedding -- ``SparseAdam`` (lazy Adam: only rows in the batch are read and written) for the
    embedding plus Adam/AdamW for the rest."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], sparse_params: list[Tensor]) -> None:
        self.optimizers = optimizers
        self.sparse_params = sparse_params

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def unscale_(self, scaler: torch.amp.GradScaler) -> None:
        for opt in self.optimizers:
            scaler.unscale_(opt)

    def step(self, scaler: torch.amp.GradScaler) -> None:
        for opt in self.optimizers:
            scaler.step(opt)

    def state_dict(self) -> list[dict[str, Any]]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        for opt, state in zip(self.optimizers, states, strict=True):
            opt.load_state_dict(state)


def make_optimizer(model: DGSR, config: TrainConfig) -> Optimizers:
    """AdamW (decoupled weight decay) or Adam (L2 in the gradient, as the paper); with
    ``sparse_embedding`` the item table goes to ``SparseAdam`` (no weight decay on it)."""
    dense_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    if not config.sparse_embedding:
        return Optimizers([dense_cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)], [])
    table = model.item_embedding.weight
    rest = [p for p in model.parameters() if p is not table]
    return Optimizers(
        [
            torch.optim.SparseAdam([table], lr=config.lr),
            dense_cls(rest, lr=config.lr, weight_decay=config.weight_decay),
        ],
        [table],
    )


def clip_grad_norm(model: torch.nn.Module, max_norm: float) -> Tensor:
    """``clip_grad_norm_`` that also handles sparse gradients (coalesced in place first)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):  # type: ignore[union-attr]
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    norms = []
    for p in params:
        assert p.grad is not None
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            norms.append(p.grad._values().norm())
        else:
            norms.append(p.grad.norm())
    total = torch.stack([n.float() for n in norms]).norm()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale.to(p.grad.dtype))  # type: ignore[union-attr]
    return total


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
    optimizer: Optimizers,
    scaler: torch.amp.GradScaler,
    batch: DGSRBatch,
    *,
    amp: contextlib.AbstractContextManager,
    grad_clip: float | None,
    generator: torch.Generator | None,
    type_weights: Tensor | None = None,
) -> Tensor:
    """One optimisation step on a batch already on the model's device; returns the detached loss.

    ``type_weights [3]``: loss weight of a sample by the event type of its target (typed samples only).
    """
    assert batch.target is not None
    with amp:
        reps = model(batch)
        if batch.target_type is not None:
            reps = model.typed(reps, batch.target_type)
        bonus = model.history_bonus(batch, batch.target_type)
        history = None if bonus is None else (batch.history_item, bonus)
        weight = None
        if type_weights is not None and batch.target_type is not None:
            weight = type_weights[batch.target_type]
        loss = loss_fn(
            reps, batch.target, model.item_embedding.weight, generator, history=history, weight=weight
        )
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
    """What the loop has learnt so far; saved in every checkpoint."""

    epoch: int = 0  # last finished epoch
    history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int = 0
    best_state: dict[str, Tensor] | None = None
    stale: int = 0  # evaluations since the best one
    stopped: bool = False


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
    config: TrainConfig

    def save(self, progress: _Progress, path: Path) -> None:
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        state = {
            "fingerprint": self.fingerprint,  # config hash + data identity: resume only if equal
            "config_hash": self.config.config_hash(),
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": cuda_rng,
                "order": self.order_rng.bit_generator.state,
                "negative": self.negative_rng.get_state(),
            },
            "progress": dict(vars(progress)),  # plain dict: loadable without this module's classes
        }
        _atomic_save(state, path)

    def restore(self, path: Path) -> _Progress | None:
        """Load ``path`` if it belongs to this run (same fingerprint); the progress, or None."""
        state = torch.load(path, map_location="cpu", weights_only=False)
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
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.order_rng.bit_generator.state = state["rng"]["order"]
        self.negative_rng.set_state(state["rng"]["negative"])
        progress = _Progress(**state["progress"])
        logger.info("Resuming DGSR training from %s after epoch %d", path, progress.epoch)
        return progress


def _prepare_checkpoint_dir(checkpoint_dir: str | Path | None) -> Path | None:
    if checkpoint_dir is None:
        return None
    directory = Path(checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob(f"{CHECKPOINT_FILE}.tmp*"):  # from a run killed while writing
        logger.info("Removing incomplete checkpoint %s", leftover)
        leftover.unlink(missing_ok=True)
    return directory / CHECKPOINT_FILE


def _train_epoch(
    run: _Run, loss_fn: torch.nn.Module, dataset: SubgraphBatches, epoch: int, amp: Any
) -> tuple[float, int]:
    """One pass over ``dataset`` (its order already set); ``(mean loss, samples)``."""
    config, device = run.config, run.device
    run.model.train()
    type_weights = torch.tensor(config.type_loss_weights, dtype=torch.float32, device=device)
    total_loss = torch.zeros((), dtype=torch.float64, device=device)  # summed on device: no sync per step
    total_n = 0
    loader = _loader(dataset, config.num_workers, device, config.seed + epoch)
    bar = _progress(loader, config.progress, desc=f"epoch {epoch}", total=len(dataset))
    with _share_cpu_with_workers(device, config.num_workers):
        for step, host_batch in enumerate(bar):
            batch = host_batch.to(device, non_blocking=True)
            loss = train_step(
                run.model,
                loss_fn,
                run.optimizer,
                run.scaler,
                batch,
                amp=amp,
                grad_clip=config.grad_clip,
                generator=run.negative_rng,
                type_weights=type_weights,
            )
            total_loss += loss.double() * batch.num_samples
            total_n += batch.num_samples
            if step % 20 == 0:
                bar.set_postfix(loss=f"{float(loss):.4f}")
    mean = float(total_loss) / max(total_n, 1)
    if not math.isfinite(mean):
        raise FloatingPointError(f"DGSR training loss is {mean} in epoch {epoch}")
    return mean, total_n


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

    ``on_epoch_end(epoch, metrics)`` (epochs 1-based) receives ``train_loss``, ``val_recall@K`` (on
    evaluated epochs), ``train_samples_per_s`` and ``epoch_seconds``. ``sampler`` defaults to
    :func:`make_sampler`. A checkpoint in ``checkpoint_dir`` from the same config and data is resumed.
    """
    train_samples.validate(graph, "train_samples")
    if len(train_samples) == 0:
        raise ValueError("train_samples is empty")
    if val_samples is not None:
        val_samples.validate(graph, "val_samples")
        val_samples = val_samples if len(val_samples) else None
    device = resolve_device(config.device)
    sampler = sampler if sampler is not None else make_sampler(graph, config)
    torch.manual_seed(config.seed)
    model = build_model(graph.num_items, config).to(device)
    loss_fn = make_loss(
        config.loss,
        np.bincount(train_samples.target, minlength=graph.num_items),
        num_negatives=config.num_negatives,
        alpha=config.negative_alpha,
        uniform_mix=config.negative_uniform_mix,
        in_batch=config.in_batch_negatives,
        sparse=config.sparse_embedding,
    ).to(device)
    amp, amp_dtype = _autocast(device, config.amp)
    run = _Run(
        model=model,
        optimizer=make_optimizer(model, config),
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
        order_rng=np.random.default_rng(config.seed),
        negative_rng=torch.Generator(device=device).manual_seed(config.seed + 1),
        device=device,
        fingerprint=_run_fingerprint(graph, train_samples, val_samples, config),
        config=config,
    )
    checkpoint_path = _prepare_checkpoint_dir(checkpoint_dir)
    progress = None
    if checkpoint_path is not None and checkpoint_path.exists():
        progress = run.restore(checkpoint_path)
    progress = progress or _Progress()

    metric_name = f"val_recall@{config.eval_k}"
    dataset = SubgraphBatches(
        graph,
        sampler,
        train_samples,
        config.batch_size,
        num_layers=config.k_hop,
        context_window=config.context_window,
        history_length=model.history_length,
    )
    start_epoch = progress.epoch + 1
    for epoch in range(start_epoch, config.epochs + 1):
        if progress.stopped:
            break
        t0 = time.perf_counter()
        order = run.order_rng.permutation(len(train_samples))
        dataset.set_order(order[: config.max_train_samples_per_epoch])
        train_loss, n_seen = _train_epoch(run, loss_fn, dataset, epoch, amp)
        seconds = time.perf_counter() - t0
        metrics = {
            "train_loss": train_loss,
            "train_samples_per_s": n_seen / seconds,
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
                batch_size=config.eval_batch_size or config.batch_size,
                num_workers=config.num_workers,
                progress=config.progress,
            )
            metrics[metric_name] = recall
            if progress.best_metric is None or recall > progress.best_metric:
                progress.best_metric, progress.best_epoch, progress.stale = recall, epoch, 0
                progress.best_state = _cpu_state(model)
            else:
                progress.stale += 1
                progress.stopped = progress.stale >= config.patience
        elif val_samples is None:
            progress.best_epoch = epoch  # no validation: the last epoch is the result
        progress.epoch = epoch
        progress.history.append({"epoch": float(epoch), **metrics})
        logger.info("DGSR epoch %d: %s", epoch, {k: round(v, 5) for k, v in metrics.items()})
        if checkpoint_path is not None:
            run.save(progress, checkpoint_path)
        if on_epoch_end is not None:
            on_epoch_end(epoch, dict(metrics))
        if progress.stopped:
            logger.info(
                "Early stopping after epoch %d: best %s %.5f at epoch %d",
                epoch,
                metric_name,
                progress.best_metric,
                progress.best_epoch,
            )
    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)
    model.eval()
    return TrainResult(
        model=model,
        history=copy.deepcopy(progress.history),
        best_epoch=progress.best_epoch,
        best_metric=progress.best_metric,
        start_epoch=start_epoch,
        stopped_early=progress.stopped,
        config=config,
    )

"""DataLoaders of DGSR batches: worker processes build batches while the model trains or scores.

The main process only decides which sample rows form a batch (:class:`EpochBatches`, a batch
sampler); the collate object (:class:`~gnn_recsys.loader.collate.SubgraphCollate`) samples the
subgraphs and builds the tensors inside a worker. Workers are persistent, so each epoch only sets a
new order (:meth:`EpochBatches.new_epoch`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gnn_recsys.loader.collate import SubgraphCollate
from gnn_recsys.models.batch import PackedBatch
from gnn_recsys.models.config import from_mapping
from gnn_recsys.runtime import keep_freed_memory


@dataclass(frozen=True)
class LoaderConfig:
    """Worker processes for training, validation and inference batches."""

    #: "auto": one per core but one, at most 8, and none on a machine of 2 cores or fewer, where the
    #: sampler in the main process measured faster (2.5k vs 1.7k samples/s). Under torchrun the ranks
    #: of a machine share its cores. More is not faster on a GPU: on an H200 box (16 cores, batches
    #: of 8,192) 6 / 8 / 10 / 14 workers trained 151k / 193k / 177k / 152k samples/s; beyond ~8 the
    #: main process, which launches the model's kernels, slows down (benchmarks/README.md).
    num_workers: int | str = "auto"
    prefetch_factor: int = 4  # batches queued per worker
    persistent_workers: bool = True  # keep workers (and their graph pages) across epochs
    pin_memory: bool = True  # page-locked host batches for fast, asynchronous copies to CUDA
    #: workers hand each batch over as one buffer instead of ~30 tensors (each its own shared-memory
    #: segment: 7.1 ms to receive a batch of 512 on the CPU, 1.1 ms packed), unpacked into views there
    pack: bool = True
    #: for a CUDA device, packed batches carry integers narrowed to int8/16/32 (~3.6x fewer bytes to
    #: write, receive, pin and copy; +46% training samples/s on an H200), widened there
    compact: bool = True
    #: workers keep freed memory for the next batch instead of returning it to the system (glibc):
    #: a batch of 8,192 samples built 1.24-1.31x faster, ~+330 MB resident per worker at that size
    keep_freed_memory: bool = True

    def __post_init__(self) -> None:
        if self.num_workers != "auto" and (not isinstance(self.num_workers, int) or self.num_workers < 0):
            raise ValueError(f"loader.num_workers must be 'auto' or an int >= 0, got {self.num_workers!r}")
        if self.prefetch_factor < 1:
            raise ValueError("loader.prefetch_factor must be >= 1")

    def workers(self) -> int:
        """The number of worker processes this process gets (its share of the machine's cores)."""
        if self.num_workers != "auto":
            return int(self.num_workers)
        cores = (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        return 0 if cores <= 2 else min(8, cores - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> LoaderConfig:
        return from_mapping(cls, values, "loader")


class _Rows(Dataset[int]):
    """Sample row ``i`` is just ``i``: the collate function in the worker does the real work."""

    def __init__(self, num_samples: int) -> None:
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> int:
        return i

    def __getitems__(self, rows: list[int]) -> np.ndarray:  # one call per batch, not per sample
        return np.asarray(rows, dtype=np.int64)


class EpochBatches(Sampler[np.ndarray]):
    """Batches of sample rows in the current epoch's order; lives in the main process.

    Set the order with :meth:`new_epoch` before iterating the loader; persistent workers then receive
    the new batches without being restarted.
    """

    def __init__(self, num_samples: int, batch_size: int) -> None:
        self.batch_size = batch_size
        self.order = np.arange(num_samples, dtype=np.int64)

    def new_epoch(self, order: np.ndarray) -> None:
        self.order = np.asarray(order, dtype=np.int64)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.order), self.batch_size):
            yield self.order[start : start + self.batch_size]


class PackedCollate:
    """The collate of worker processes: each batch crosses to the main process as one buffer
    (:class:`~gnn_recsys.models.batch.PackedBatch`), its integers narrowed when ``narrow``."""

    def __init__(self, collate: SubgraphCollate, *, narrow: bool) -> None:
        self.collate = collate
        self.narrow = narrow

    def __call__(self, rows: np.ndarray) -> PackedBatch:
        return self.collate(rows).pack(narrow=self.narrow)


def _worker_init(_: int, *, keep_memory: bool = False) -> None:
    torch.set_num_threads(1)  # a worker samples with numpy; torch threads there would only compete
    if keep_memory:
        keep_freed_memory()


def make_loader(
    collate: SubgraphCollate,
    batches: EpochBatches,
    config: LoaderConfig,
    device: torch.device,
    *,
    persistent: bool = True,
) -> DataLoader:
    """A loader of batches built by ``collate`` in worker processes, in ``batches``' order.

    It yields :class:`~gnn_recsys.models.batch.DGSRBatch` (no workers) or, from workers with
    ``config.pack``, :class:`~gnn_recsys.models.batch.PackedBatch`: ``.to(device)`` gives the
    ``DGSRBatch`` either way.
    """
    workers = config.workers()
    # Only a hand-over between processes gains from packing; narrow only where widening is free: on a
    # CPU device the main process would pay the int64 copy back (measured ~12-19 ms per 8192-sample
    # batch, about what the smaller hand-over saves).
    pack = config.pack and workers > 0
    narrow = pack and config.compact and device.type == "cuda"
    return DataLoader(
        _Rows(len(collate.samples)),
        batch_sampler=batches,
        collate_fn=PackedCollate(collate, narrow=narrow) if pack else collate,
        num_workers=workers,
        pin_memory=config.pin_memory and device.type == "cuda",
        worker_init_fn=partial(_worker_init, keep_memory=config.keep_freed_memory) if workers > 0 else None,
        prefetch_factor=config.prefetch_factor if workers > 0 else None,
        persistent_workers=config.persistent_workers and persistent and workers > 0,
        # Its own generator: a loader iterator otherwise draws its worker seed from torch's global RNG,
        # once per epoch without persistent workers and once in all with them, shifting dropout masks.
        generator=torch.Generator().manual_seed(0),
    )

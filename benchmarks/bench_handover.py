"""Benchmark: handing DGSR batches from a loader worker to the main process, ~30 tensors vs one buffer.

A tensor that a DataLoader worker returns crosses to the main process in a shared-memory segment of
its own, which the receiving side must open and map; a :class:`~gnn_recsys.models.batch.DGSRBatch`
holds ~30 tensors. ``loader.pack`` hands each batch over as one byte buffer instead
(:class:`~gnn_recsys.models.batch.PackedBatch`). With one worker and its queue filled before timing,
this prints per batch size and hand-over

* *receive*: ``next()`` on the loader (what the main process -- or on a GPU its pin-memory thread --
  spends per batch),
* *unpack*: ``.to("cpu")`` of what arrived (views for a packed batch; widening for a narrowed one),
* *feed*: samples/s one worker delivers when the main process only receives and unpacks (the
  worker's sampling, batch building, packing and sending: its share of a loader's throughput),

and the ratios against the first variant measured in the same run (each variant twice, in turn).
The narrowed variants are what workers send for a CUDA device (``loader.compact``): before
``loader.pack`` ~30 narrowed tensors, now one narrowed buffer; their widening runs on the GPU there,
on the CPU here (so *unpack* means little for them).

    .venv/bin/python benchmarks/bench_handover.py                       # ~1 min on 2 idle cores
    .venv/bin/python benchmarks/bench_handover.py --batch-sizes 512 --events 100000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import _graph  # noqa: E402

from gnn_recsys.graph.sampler import training_sample_events  # noqa: E402
from gnn_recsys.loader import SampleSet  # noqa: E402
from gnn_recsys.loader.collate import SubgraphCollate, make_sampler  # noqa: E402
from gnn_recsys.loader.loaders import EpochBatches, PackedCollate, _Rows  # noqa: E402
from gnn_recsys.models.batch import DGSRBatch, narrowest_integer_dtype  # noqa: E402
from gnn_recsys.training import FitConfig  # noqa: E402


class NarrowedTensors:
    """The hand-over to a GPU before ``loader.pack``: every tensor on its own, integers narrowed."""

    def __init__(self, collate: SubgraphCollate) -> None:
        self.collate = collate

    def __call__(self, rows: np.ndarray) -> DGSRBatch:
        return self.collate(rows).map(lambda t: t.to(narrowest_integer_dtype(t)))


def _widen(batch: DGSRBatch) -> DGSRBatch:
    return batch.map(lambda t: t.long() if t.dtype in (torch.int8, torch.int16, torch.int32) else t)


#: label -> (collate function of the worker, what the main process does with a received batch)
VARIANTS: dict[str, tuple[Callable[[SubgraphCollate], Callable], Callable[[Any], DGSRBatch]]] = {
    "~30 tensors (pack: false)": (lambda c: c, lambda b: b.to("cpu")),
    "packed": (lambda c: PackedCollate(c, narrow=False), lambda b: b.to("cpu")),
    "~30 tensors, narrowed (before)": (NarrowedTensors, _widen),
    "packed, narrowed (CUDA now)": (lambda c: PackedCollate(c, narrow=True), lambda b: b.to("cpu")),
}


def _loader(collate: SubgraphCollate, variant: str, batch_size: int, num_batches: int) -> DataLoader:
    batches = EpochBatches(len(collate.samples), batch_size)
    batches.new_epoch(np.random.default_rng(1).permutation(len(collate.samples))[: batch_size * num_batches])
    return DataLoader(_Rows(len(collate.samples)), batch_sampler=batches, collate_fn=VARIANTS[variant][0](collate),
                      num_workers=1, prefetch_factor=num_batches)  # fmt: skip


def feed(collate: SubgraphCollate, variant: str, batch_size: int, num_batches: int) -> float:
    """Samples/s from one worker that the main process only receives and unpacks (after a first batch)."""
    unpack = VARIANTS[variant][1]
    batch_iter = iter(_loader(collate, variant, batch_size, num_batches + 1))
    unpack(next(batch_iter))
    t0 = time.perf_counter()
    seen = sum(unpack(host).num_samples for host in batch_iter)
    return seen / (time.perf_counter() - t0)


def handover(collate: SubgraphCollate, variant: str, batch_size: int, timed: int) -> tuple[float, float]:
    """Median ms per batch to receive from one primed worker, and to unpack on the CPU."""
    unpack = VARIANTS[variant][1]
    batch_iter = iter(_loader(collate, variant, batch_size, timed + 1))
    t0 = time.perf_counter()
    next(batch_iter)
    time.sleep(2 + 1.5 * timed * (time.perf_counter() - t0))  # the worker fills its queue
    received, unpacked = [], []
    for _ in range(timed):
        t0 = time.perf_counter()
        host = next(batch_iter)
        t1 = time.perf_counter()
        unpack(host)
        received.append(t1 - t0)
        unpacked.append(time.perf_counter() - t1)
    return statistics.median(received) * 1e3, statistics.median(unpacked) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=400_000, help="generated training graph size")
    parser.add_argument("--items", type=int, default=40_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[512, 8192])
    parser.add_argument("--timed", type=int, default=6, help="batches timed per variant (all queued)")
    parser.add_argument("--feed-batches", type=int, default=12, help="batches for the feed rate")
    args = parser.parse_args()
    torch.set_num_threads(1)

    graph = _graph(args.events, args.items)
    samples = SampleSet.from_events(graph, training_sample_events(graph))
    model = FitConfig().model
    collate = SubgraphCollate(graph, samples, model, sampler=make_sampler(graph, model))
    print(
        f"graph: {graph.num_events:,} events, {graph.num_items:,} items; one worker, {args.timed} batches timed"
    )
    for batch_size in args.batch_sizes:
        batch = collate(np.random.default_rng(0).choice(len(samples), batch_size, replace=False))
        tensors = batch.tensors()
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        print(f"\nbatch {batch_size:,}: {len(tensors)} tensors, {nbytes / 1e6:.1f} MB as built")
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in VARIANTS}
        for _ in range(2):
            for name in VARIANTS:
                received, unpacked = handover(collate, name, batch_size, args.timed)
                results[name].append((received, unpacked, feed(collate, name, batch_size, args.feed_batches)))
        base = [statistics.mean(v) for v in zip(*results[next(iter(VARIANTS))], strict=True)]
        for name, rounds in results.items():
            received, unpacked, rate = (statistics.mean(v) for v in zip(*rounds, strict=True))
            print(f"  {name:<31} receive {received:6.2f} ms ({base[0] / received:4.1f}x)  unpack {unpacked:6.2f} ms  "
                  f"feed {' / '.join(f'{r[2]:,.0f}' for r in rounds)} samples/s ({rate / base[2]:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()

"""DGSR training throughput (samples/s): sampler alone, train step alone, and end to end.

One command, prints figures (CPU, then CUDA when available)::

    .venv/bin/python benchmarks/bench_training.py             # default TrainConfig, 2 CPU threads
    .venv/bin/python benchmarks/bench_training.py --profile   # + where the step time goes (torch.profiler)
    .venv/bin/python benchmarks/bench_training.py --sweep     # + smaller sizes, to see what reaches a target

Data: the project's synthetic OTTO generator at ~1M events / ~50k items (heavy-tailed popularity and
session lengths like OTTO), ``build_temporal_graph``, one training sample per predictable event.

Measured in the same run, on the same batches:

* ``sampler.sample`` / ``make_batch``: what a DataLoader worker does per batch;
* ``step, sampler excluded``: forward + sampled-softmax loss + backward + AdamW on pre-built batches,
  for ``attention="dense"`` (padded blocks) and the ``"segment"`` baseline (per-edge softmax);
* ``end to end``: ``train_dgsr``'s loop (DataLoader over batch indices, sampling inside) with the
  given numbers of workers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.graph.sampler import training_samples
from gnn_recsys.graph.temporal_graph import build_temporal_graph
from gnn_recsys.models.dgsr import DGSRBatch, make_batch
from gnn_recsys.models.loss import make_loss
from gnn_recsys.training.config import TrainConfig
from gnn_recsys.training.trainer import (
    SampleSet,
    SubgraphBatches,
    _autocast,
    _loader,
    _share_cpu_with_workers,
    build_model,
    make_optimizer,
    make_sampler,
    train_step,
)


def build_data(num_events: int, num_items: int, seed: int) -> tuple[Any, SampleSet]:
    sessions = max(1, round(num_events / 14.9))  # the generator's mean session length
    events = synthetic_events(
        SyntheticConfig(num_items=num_items, num_train_sessions=sessions, num_test_sessions=0, seed=seed)
    )
    graph = build_temporal_graph(events)
    return graph, SampleSet(*training_samples(graph))


@dataclass
class Harness:
    """Model, loss and optimiser as ``train_dgsr`` builds them, for timing single steps."""

    model: Any
    loss_fn: Any
    optimizer: Any
    scaler: Any
    amp: Any
    generator: torch.Generator

    @classmethod
    def build(cls, num_items: int, samples: SampleSet, config: TrainConfig, device: torch.device) -> Harness:
        torch.manual_seed(config.seed)
        model = build_model(num_items, config).to(device).train()
        counts = np.bincount(samples.target, minlength=num_items)
        loss_fn = make_loss(
            config.loss, counts, num_negatives=config.num_negatives, sparse=config.sparse_embedding
        ).to(device)
        optimizer = make_optimizer(model, config)
        amp, dtype = _autocast(device, config.amp)
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        return cls(model, loss_fn, optimizer, scaler, amp, torch.Generator(device=device).manual_seed(0))

    def step(self, batch: DGSRBatch, grad_clip: float | None) -> None:
        train_step(
            self.model,
            self.loss_fn,
            self.optimizer,
            self.scaler,
            batch,
            amp=self.amp,
            grad_clip=grad_clip,
            generator=self.generator,
        )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_sampler(
    graph: Any, samples: SampleSet, config: TrainConfig, rows: list[np.ndarray]
) -> list[DGSRBatch]:
    sampler = make_sampler(graph, config)
    batches = []
    t_sample = t_batch = 0.0
    for r in rows:
        t0 = time.perf_counter()
        sub = sampler.sample(samples.session[r], samples.cut_ts[r])
        t1 = time.perf_counter()
        batch = make_batch(
            graph,
            sub,
            samples.cut_ts[r],
            config.k_hop,
            context_window=config.context_window,
            target=samples.target[r],
        )
        t_batch += time.perf_counter() - t1
        t_sample += t1 - t0
        batches.append(batch)
    n = sum(len(r) for r in rows)
    print(
        f"  sampler.sample                   {n / t_sample:8.0f} samples/s  ({1000 * t_sample / len(rows):.1f} ms/batch)"
    )
    print(
        f"  make_batch                       {n / t_batch:8.0f} samples/s  ({1000 * t_batch / len(rows):.1f} ms/batch)"
    )
    nodes = np.array([[len(h.node) for h in b.hops] for b in batches]).mean(0)
    leaf_rows = np.mean([len(b.hops[-1].row_node) for b in batches])
    print(
        f"  nodes per batch, hops 1..{config.k_hop}: {np.round(nodes).astype(int).tolist()} (leaf rows {leaf_rows:.0f})"
    )
    return batches


def time_steps(
    harness: Harness, batches: list[DGSRBatch], device: torch.device, grad_clip: float | None
) -> float:
    on_device = [b.to(device) for b in batches]
    for batch in on_device[:2]:  # warm-up (allocator, MKL/cuBLAS plans)
        harness.step(batch, grad_clip)
    _sync(device)
    t0 = time.perf_counter()
    for batch in on_device:
        harness.step(batch, grad_clip)
    _sync(device)
    return sum(b.num_samples for b in batches) / (time.perf_counter() - t0)


def time_end_to_end(
    graph: Any,
    samples: SampleSet,
    config: TrainConfig,
    rows: list[np.ndarray],
    device: torch.device,
    *,
    workers: int,
) -> float:
    """``train_dgsr``'s inner loop: DataLoader over batch indices, sampling inside (workers)."""
    harness = Harness.build(graph.num_items, samples, config, device)
    dataset = SubgraphBatches(
        graph,
        make_sampler(graph, config),
        samples,
        config.batch_size,
        num_layers=config.k_hop,
        context_window=config.context_window,
    )
    dataset.set_order(np.concatenate(rows))
    n = 0
    with _share_cpu_with_workers(device, workers):
        loader = iter(_loader(dataset, workers, device, 0))
        harness.step(next(loader).to(device), config.grad_clip)  # worker start-up is not throughput
        _sync(device)
        t0 = time.perf_counter()
        for host_batch in loader:
            harness.step(host_batch.to(device, non_blocking=True), config.grad_clip)
            n += host_batch.num_samples
        _sync(device)
    return n / (time.perf_counter() - t0)


def profile_steps(harness: Harness, batches: list[DGSRBatch], device: torch.device) -> None:
    on_device = [b.to(device) for b in batches[:4]]
    harness.step(on_device[0], 5.0)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for batch in on_device[1:]:
            harness.step(batch, 5.0)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"  profile of {len(on_device) - 1} steps:")
    print(prof.key_averages().table(sort_by=key, row_limit=15))


def report(
    graph: Any, samples: SampleSet, config: TrainConfig, args: argparse.Namespace, device: torch.device
) -> None:
    print(
        f"\n== {device.type}: batch {config.batch_size}, item_max_length {config.item_max_length}, "
        f"user_max_length {config.user_max_length}, k_hop {config.k_hop}, d {config.embedding_dim}, "
        f"negatives {config.num_negatives}, dropout {config.dropout}, sparse_embedding {config.sparse_embedding}"
    )
    order = np.random.default_rng(config.seed).permutation(len(samples))
    rows = [order[i * config.batch_size : (i + 1) * config.batch_size] for i in range(args.batches)]
    batches = time_sampler(graph, samples, config, rows)
    dense = time_steps(
        Harness.build(graph.num_items, samples, config, device), batches, device, config.grad_clip
    )
    print(f"  step, sampler excluded (dense)   {dense:8.0f} samples/s")
    if args.segment:
        segment_config = config.with_(attention="segment")
        harness = Harness.build(graph.num_items, samples, segment_config, device)
        segment = time_steps(harness, batches, device, config.grad_clip)
        print(
            f"  step, sampler excluded (segment) {segment:8.0f} samples/s  (dense / segment = {dense / segment:.2f}x)"
        )
    workers = args.workers if device.type == "cpu" else args.cuda_workers
    for n_workers in workers:
        e2e = time_end_to_end(graph, samples, config, rows, device, workers=n_workers)
        print(f"  end to end, {n_workers} worker(s)          {e2e:8.0f} samples/s  (sampler included)")
    if args.profile:
        profile_steps(Harness.build(graph.num_items, samples, config, device), batches, device)


SWEEP = (
    {"user_max_length": 10},
    {"item_max_length": 20},
    {"item_max_length": 20, "user_max_length": 10},
    {"item_max_length": 20, "user_max_length": 10, "dropout": 0.0},
    {"item_max_length": 10, "user_max_length": 10},
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch CPU threads (the target box has 2 cores)"
    )
    parser.add_argument("--batches", type=int, default=12, help="timed batches per measurement")
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 1], help="DataLoader workers (CPU)")
    parser.add_argument(
        "--cuda-workers", type=int, nargs="*", default=[0, 4], help="DataLoader workers (CUDA)"
    )
    parser.add_argument(
        "--no-segment", dest="segment", action="store_false", help="skip the segment baseline"
    )
    parser.add_argument("--no-cuda", dest="cuda", action="store_false")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--sweep", action="store_true", help="also time smaller sizes (no segment, no profile)"
    )
    parser.add_argument(
        "--sparse", action="store_true", help="sparse_embedding=True (SparseAdam on the item table)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__} on {platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"{torch.get_num_threads()} torch threads"
        + (f", CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no CUDA")
    )
    t0 = time.perf_counter()
    graph, samples = build_data(args.events, args.items, args.seed)
    print(
        f"synthetic graph: {graph.num_events} events, {graph.num_items} items, {graph.num_sessions} sessions, "
        f"{len(samples)} training samples (built in {time.perf_counter() - t0:.1f}s)"
    )
    config = TrainConfig(progress=False, seed=args.seed, sparse_embedding=args.sparse)
    devices = [torch.device("cpu")]
    if args.cuda and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for device in devices:
        report(graph, samples, config, args, device)
        if args.sweep:
            quick = argparse.Namespace(**{**vars(args), "segment": False, "profile": False})
            for changes in SWEEP:
                report(graph, samples, config.with_(**changes), quick, device)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()

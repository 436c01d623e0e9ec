"""Benchmark: temporal graph build and DGSR subgraph sampling on a generated OTTO-like graph.

Generates ~10M events (700k sessions with heavy-tailed lengths, 200k items with Zipf popularity,
repeat visits, four weeks of timestamps with exact ties), builds the temporal graph, then samples
batches of random training samples with

* the vectorised sampler (latest events or distinct sessions, with and without the context window),
* optionally the NumPy sampler in a torch DataLoader with 2 worker processes (memory-mapped graph),
* a per-sample implementation that masks the whole edge list by time for every sample (the design
  of the public DGSR code), on a handful of samples, checked to give the same subgraphs,

and prints samples/s, edges/s and the speed-up. Throughput is wall-clock; CPU seconds of this
process are printed too, because the machine may be shared (wall > CPU means others were running).

    .venv/bin/python benchmarks/bench_sampler.py            # full size (~30 s on 2 idle cores)
    .venv/bin/python benchmarks/bench_sampler.py --sessions 70000 --items 20000 --batches 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import torch

from gnn_recsys.graph.sampler import SubgraphBatch, TemporalSubgraphSampler, training_samples
from gnn_recsys.graph.temporal_graph import TemporalGraph, build_temporal_graph

T0 = 1_659_304_800_000
DAY_MS = 86_400_000


def generate_events(num_sessions: int, num_items: int, seed: int) -> pl.DataFrame:
    """OTTO-like events: lognormal session lengths (2..500), Zipf items, revisits, 4 weeks, ties."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(2.1, 1.1, num_sessions)), 2, 500).astype(np.int64)
    n_events = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    position = np.arange(n_events) - np.repeat(starts, lengths)
    popularity = 1.0 / (np.arange(1, num_items + 1) + 20.0) ** 0.95
    cdf = np.cumsum(popularity) / popularity.sum()
    aid = rng.permutation(num_items)[np.searchsorted(cdf, rng.random(n_events))].astype(np.int32)
    revisit = (rng.random(n_events) < 0.35) & (position > 0)  # re-view an earlier item of the session
    source = np.arange(n_events) - 1 - np.floor(rng.random(n_events) * position).astype(np.int64)
    aid[revisit] = aid[source[revisit]]
    gaps = np.round(rng.lognormal(np.log(30_000), 1.5, n_events)).astype(np.int64)
    gaps[rng.random(n_events) < 0.03] = 0  # same-millisecond events
    gaps[position == 0] = 0
    elapsed = np.cumsum(gaps)
    ts = (
        np.repeat(T0 + rng.integers(0, 28 * DAY_MS, num_sessions), lengths)
        + elapsed
        - np.repeat(elapsed[starts], lengths)
    )
    return pl.DataFrame(
        {
            "session": np.repeat(np.arange(num_sessions, dtype=np.int32), lengths),
            "aid": aid,
            "ts": ts,
            "type": rng.choice(3, size=n_events, p=[0.9, 0.08, 0.02]).astype(np.int8),
        }
    )


class MaskingSampler:
    """Per-sample reference design: mask the whole edge list by time, then take each node's last k.

    For every sample it filters all E edges by ``ts < cut`` (O(E)), rebuilds the CSR offsets of the
    surviving edges per session and per item (O(E)), then reads the newest edges of the frontier.
    """

    def __init__(self, graph: TemporalGraph, item_max_length: int, user_max_length: int) -> None:
        self.graph = graph
        self.item_max_length = item_max_length
        self.user_max_length = user_max_length
        self.item_ts = np.ascontiguousarray(graph.item_ts)
        self.item_event = np.ascontiguousarray(graph.item_event)

    def sample_one(self, session: int, cut: int) -> list[tuple[int, int, int, int]]:
        """(hop, parent path index, order, event) of a 2-hop subgraph."""
        g = self.graph
        alive_session = g.ev_ts < cut  # the whole edge list, session view
        alive_item = self.item_ts < cut  # and item view
        session_ptr = np.concatenate([[0], np.cumsum(alive_session)])[g.session_ptr]
        item_ptr = np.concatenate([[0], np.cumsum(alive_item)])[g.item_ptr]
        session_events = np.flatnonzero(alive_session)
        item_events = self.item_event[alive_item]
        hop1 = session_events[session_ptr[session] : session_ptr[session + 1]][::-1][: self.item_max_length]
        edges = [(1, 0, order, int(event)) for order, event in enumerate(hop1)]
        for parent, event in enumerate(hop1):
            item = g.ev_item[event]
            newest = item_events[item_ptr[item] : item_ptr[item + 1]][::-1][: self.user_max_length]
            edges += [(2, parent, order, int(e)) for order, e in enumerate(newest)]
        return edges


def batch_edges(batch: SubgraphBatch, sample: int) -> list[tuple[int, int, int, int]]:
    """The 2-hop edges of one sample of a vectorised batch, in MaskingSampler's format."""
    hop1, hop2 = batch.hops[0], batch.hops[1]
    mine = np.flatnonzero(np.asarray(hop1.parent) == sample)
    edges = [(1, 0, int(hop1.order[i]), int(hop1.event[i])) for i in mine]
    for local, i in enumerate(mine):
        children = np.flatnonzero(np.asarray(hop2.parent) == i)
        edges += [(2, local, int(hop2.order[j]), int(hop2.event[j])) for j in children]
    return edges


def timed(run: Callable[[], int]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, edges)."""
    wall, cpu = time.perf_counter(), time.process_time()
    edges = run()
    return time.perf_counter() - wall, time.process_time() - cpu, edges


class _BatchDataset(torch.utils.data.Dataset):
    """One item = one sampled batch (what a training DataLoader would do)."""

    def __init__(self, sampler: TemporalSubgraphSampler, sessions: np.ndarray, cuts: np.ndarray) -> None:
        self.sampler, self.sessions, self.cuts = sampler, sessions, cuts

    def __len__(self) -> int:
        return len(self.sessions)

    def __getitem__(self, index: int) -> int:
        return self.sampler.sample(self.sessions[index], self.cuts[index]).num_edges


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=700_000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--item-max-length", type=int, default=50)
    parser.add_argument("--user-max-length", type=int, default=20)
    parser.add_argument("--k-hop", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (0 to skip)")
    parser.add_argument("--baseline-samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    events = generate_events(args.sessions, args.items, args.seed)
    print(f"generated {events.height:,} events in {time.perf_counter() - started:.1f} s")
    wall, cpu, _ = timed(lambda: len(build_temporal_graph(events).item_aid))
    graph = build_temporal_graph(events)
    print(
        f"build_temporal_graph: {wall:.2f} s wall ({cpu:.2f} s CPU, {events.height / wall / 1e6:.1f} M events/s)"
    )
    stats = graph.stats()
    print(
        f"graph: {stats['num_sessions']:,} sessions, {stats['num_items']:,} items, {stats['num_events']:,} events; "
        f"session length mean {stats['session_length_mean']:.1f} max {stats['session_length_max']}, "
        f"item degree mean {stats['item_degree_mean']:.1f} max {stats['item_degree_max']}"
    )
    wall, _, n_samples = timed(lambda: len(training_samples(graph)[0]))
    sessions, cuts, _ = training_samples(graph)
    print(f"training_samples: {n_samples:,} samples in {wall:.2f} s")

    rng = np.random.default_rng(args.seed + 1)
    picks = [rng.integers(0, len(sessions), args.batch) for _ in range(args.batches)]
    batch_sessions = [sessions[p] for p in picks]
    batch_cuts = [cuts[p] for p in picks]
    n_total = args.batch * args.batches
    print(
        f"\nsampling {args.batches} batches x {args.batch} random training samples, item_max_length="
        f"{args.item_max_length}, user_max_length={args.user_max_length}, k_hop={args.k_hop}, "
        f"torch threads={args.threads}"
    )
    results = {}
    for context in (None, (2, 2)):
        for distinct in (False, True):
            sampler = TemporalSubgraphSampler(
                graph,
                args.item_max_length,
                args.user_max_length,
                args.k_hop,
                context_window=context,
                distinct_sessions=distinct,
            )
            sampler.sample(batch_sessions[0], batch_cuts[0])  # warm-up (lazy arrays, page cache)

            def run(sampler: TemporalSubgraphSampler = sampler) -> int:
                return sum(
                    sampler.sample(s, c).num_edges for s, c in zip(batch_sessions, batch_cuts, strict=True)
                )

            wall, cpu, edges = min((timed(run) for _ in range(3)), key=lambda r: r[0])
            results[(distinct, context)] = n_total / wall
            print(
                f"  distinct={distinct!s:5s} context={context!s:6s}: {n_total / wall:>9,.0f} samples/s "
                f"{edges / wall / 1e6:6.1f} M edges/s  ({edges / n_total:.0f} edges/sample, "
                f"{wall / args.batches * 1e3:.2f} ms/batch wall, {cpu / args.batches * 1e3:.2f} ms/batch CPU)"
            )

    if args.workers:
        with tempfile.TemporaryDirectory() as folder:
            graph.save(Path(folder) / "graph")
            mapped = TemporalGraph.load(Path(folder) / "graph")
            for context in (None, (2, 2)):
                sampler = TemporalSubgraphSampler(
                    mapped, args.item_max_length, args.user_max_length, args.k_hop, context_window=context
                )
                loader = torch.utils.data.DataLoader(
                    _BatchDataset(sampler, batch_sessions, batch_cuts),
                    batch_size=None,
                    num_workers=args.workers,
                    persistent_workers=True,
                    prefetch_factor=4,
                )
                for _ in loader:  # start workers and map the graph
                    pass
                wall, _, edges = min(
                    (timed(lambda loader=loader: sum(loader)) for _ in range(3)), key=lambda r: r[0]
                )
                print(
                    f"  numpy in DataLoader({args.workers} workers, mmap graph) context={context!s:6s}: "
                    f"{n_total / wall:>9,.0f} samples/s {edges / wall / 1e6:6.1f} M edges/s"
                )
                del loader

    if args.k_hop == 2 and args.baseline_samples:
        masking = MaskingSampler(graph, args.item_max_length, args.user_max_length)
        chosen = rng.integers(0, len(sessions), args.baseline_samples)
        wall, cpu, n_edges = timed(
            lambda: sum(len(masking.sample_one(int(sessions[i]), int(cuts[i]))) for i in chosen)
        )
        fast = TemporalSubgraphSampler(
            graph, args.item_max_length, args.user_max_length, 2, context_window=None
        )
        fast_batch = fast.sample(sessions[chosen], cuts[chosen])
        agree = all(
            masking.sample_one(int(sessions[i]), int(cuts[i])) == batch_edges(fast_batch, b)
            for b, i in enumerate(chosen)
        )
        baseline = len(chosen) / wall
        print(
            f"\nper-sample masking reference: {baseline:.1f} samples/s ({n_edges / wall / 1e3:.1f} k edges/s, "
            f"{wall / len(chosen) * 1e3:.0f} ms/sample) on {len(chosen)} samples; same subgraphs: {agree}"
        )
        for (distinct, context), rate in results.items():
            print(f"  speed-up distinct={distinct} context={context}: {rate / baseline:,.0f}x")


if __name__ == "__main__":
    main()

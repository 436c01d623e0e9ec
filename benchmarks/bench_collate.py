"""Benchmark: what one loader worker spends building a DGSR batch, by stage, on one core.

A worker's collate step is the sampler (temporal subgraphs), ``make_batch`` (the model's tensors) and,
on a GPU, packing the batch narrowed into one buffer; its rate bounds what a loader of ``W`` workers
can feed (about ``W`` times it on ``W`` free cores). Per batch size this prints each stage's time
(median over ``--batches`` batches) and one core's samples/s in a forked process with glibc's default
``malloc`` settings and in one that keeps freed memory (``loader.keep_freed_memory``, what workers
do), two rounds each in turn, then two choices of the code against what they replaced, in the same
run on the same arrays (ratio = replaced / now), and the training loader alone on the CPU (1 and 2
workers: sampling, building, handing over, unpacking) with workers keeping freed memory or not:

* *hop-2 keys*: numbering the (edge event, admitted later events) keys of the session leaf by first
  appearance, with a hash table sized for every key (pandas' default) and for half of them (now),
* *context windows*: the sampler's ``_context`` over the item view's columns as strided views of
  the gathered rows (before) and as contiguous copies (now).

    .venv/bin/python benchmarks/bench_collate.py                        # ~1.5 min on 2 idle cores
    .venv/bin/python benchmarks/bench_collate.py --events 2000000 --items 164000 --batch-sizes 8192
    .venv/bin/python benchmarks/bench_collate.py --graph data/04_feature/dgsr_train_graph   # your data
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import _graph, loader_rate  # noqa: E402

from gnn_recsys.graph.sampler import _context, _NumpyOps, training_sample_events  # noqa: E402
from gnn_recsys.graph.temporal_graph import ITEM_EVENT, ITEM_SESSION_POS, TemporalGraph  # noqa: E402
from gnn_recsys.loader import SampleSet  # noqa: E402
from gnn_recsys.loader.collate import SubgraphCollate, make_sampler  # noqa: E402
from gnn_recsys.models.batch import _first_seen_codes  # noqa: E402
from gnn_recsys.runtime import keep_freed_memory  # noqa: E402
from gnn_recsys.training import FitConfig  # noqa: E402


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


class _TimedSampler:
    """A collate's sampler that keeps the time of its last call (the rest of the call is ``make_batch``)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self.seconds = 0.0

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        subgraph = self.sampler.sample(*args, **kwargs)
        self.seconds = time.perf_counter() - start
        return subgraph


def stage_times(graph: Any, samples: SampleSet, batch_size: int, batches: int) -> dict[str, float]:
    """Median ms per stage of the training collate over ``batches`` batches (the same rows every call)."""
    model = FitConfig().model
    sampler = _TimedSampler(make_sampler(graph, model))
    collate = SubgraphCollate(graph, samples, model, sampler=sampler)
    rng = np.random.default_rng(0)
    rows = [rng.choice(len(samples), batch_size, replace=False) for _ in range(batches + 1)]
    times: dict[str, list[float]] = {"sampler": [], "make_batch": [], "pack (narrowed)": []}
    for i, r in enumerate(rows):
        start = time.perf_counter()
        batch = collate(r)
        middle = time.perf_counter()
        batch.pack(narrow=True)
        if i:  # the first batch warms the sampler's arrays and the page cache up
            times["sampler"].append(sampler.seconds)
            times["make_batch"].append(middle - start - sampler.seconds)
            times["pack (narrowed)"].append(time.perf_counter() - middle)
        del batch
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def _in_child(keep: bool, queue: Any, *args: Any) -> None:
    if keep:
        keep_freed_memory()
    before = resource.getrusage(resource.RUSAGE_SELF)
    times = stage_times(*args)
    after = resource.getrusage(resource.RUSAGE_SELF)
    batches = args[-1] + 1  # with the warm-up batch
    usage = {
        "user ms": (after.ru_utime - before.ru_utime) * 1e3 / batches,
        "system ms": (after.ru_stime - before.ru_stime) * 1e3 / batches,
        "page faults": (after.ru_minflt - before.ru_minflt) / batches,
    }
    queue.put((times, usage))


def stages(graph: Any, samples: SampleSet, batch_size: int, batches: int) -> None:
    context = mp.get_context("fork")  # the child inherits the graph and the samples as they are
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    usages: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(2):
        for keep in (False, True):
            queue = context.Queue()
            child = context.Process(target=_in_child, args=(keep, queue, graph, samples, batch_size, batches))
            child.start()
            times, usage = queue.get()
            results[keep].append(times)
            usages[keep].append(usage)
            child.join()
    mean = {
        keep: {name: statistics.mean(r[name] for r in rounds) for name in rounds[0]}
        for keep, rounds in results.items()
    }
    for stage_means in mean.values():
        stage_means["one core"] = sum(stage_means.values())
    print(f"  {'ms per batch':<16} {'malloc default':>15} {'freed memory kept':>18} {'ratio':>7}")
    for name, default in mean[False].items():
        kept = mean[True][name]
        print(f"  {name:<16} {default:15.1f} {kept:18.1f} {default / kept:6.2f}x")
    for keep, label in ((False, "malloc default"), (True, "freed memory kept")):
        total = mean[keep]["one core"]
        rounds = ", ".join(f"{batch_size / sum(r.values()) * 1e3:,.0f}" for r in results[keep])
        print(f"  one core, {label}: {batch_size / total * 1e3:,.0f} samples/s (rounds: {rounds})")
        usage = {name: statistics.mean(u[name] for u in usages[keep]) for name in usages[keep][0]}
        print(
            f"    per batch: CPU {usage['user ms']:.1f} ms user + {usage['system ms']:.1f} ms system (the kernel), "
            f"{usage['page faults']:,.0f} page faults"
        )


def replaced_choices(graph: Any, samples: SampleSet, batch_size: int) -> None:
    """The two choices of the code against what they replaced, on one batch's own arrays."""
    model = FitConfig().model
    rows = np.random.default_rng(0).choice(len(samples), batch_size, replace=False)
    subgraph = make_sampler(graph, model).sample(samples.session[rows], samples.cut_ts[rows])
    hop = subgraph.hops[1]
    context = np.asarray(hop.context)
    after = (context[:, model.context_window[0] :] >= 0).sum(1)
    keys = np.asarray(hop.event) * (context.shape[1] + 1) + after
    distinct = len(pd.unique(keys))
    before = median_ms(lambda: pd.factorize(keys), 7)
    now = median_ms(lambda: _first_seen_codes(keys), 7)
    print(
        f"  hop-2 keys ({len(keys):,}, {distinct:,} distinct): table for all {before:.1f} ms, "
        f"for half {now:.1f} ms: {before / now:.2f}x"
    )
    arrays = {name: np.asarray(a) for name, a in graph.arrays().items()}
    # the item-view rows the sampler gathered for this hop (each event's row in its item's segment)
    gathered = arrays["item_view"][arrays["ev_item_pos"][np.asarray(hop.event)]]
    if not np.array_equal(gathered[:, ITEM_EVENT], np.asarray(hop.event)):
        raise RuntimeError("the item view's rows do not match the hop's events")
    cut = np.asarray(subgraph.cut_ts)[np.asarray(subgraph.sample_of(2))]
    ops = _NumpyOps()

    def windows(event: np.ndarray, session_pos: np.ndarray) -> None:
        _context(
            ops,
            arrays["ev_ts"],
            event,
            session_pos >> 32,
            session_pos & 0xFFFFFFFF,
            cut=cut,
            before=model.context_window[0],
            after=model.context_window[1],
        )

    strided = (gathered[:, ITEM_EVENT], gathered[:, ITEM_SESSION_POS])
    contiguous = tuple(np.ascontiguousarray(a) for a in strided)
    before = median_ms(lambda: windows(*strided), 7)
    now = median_ms(lambda: windows(*contiguous), 7)
    print(f"  context windows: strided columns {before:.1f} ms, contiguous {now:.1f} ms: {before / now:.2f}x")


def loader_alone(graph: Any, samples: SampleSet, batch_size: int, workers: list[int]) -> None:
    """Samples/s of the training loader alone on the CPU (workers sample, build and hand over batches;
    the main process unpacks them), workers keeping freed memory or not, two rounds in turn."""
    for count in workers:
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(2):
            for keep in (False, True):
                config = FitConfig().with_(
                    train={"batch_size": batch_size, "samples_per_epoch": batch_size * 25, "device": "cpu"},
                    loader={"num_workers": count, "keep_freed_memory": keep},
                )
                rates[keep].append(loader_rate(graph, samples, config, torch.device("cpu")))
        default, kept = (statistics.mean(rates[k]) for k in (False, True))
        print(
            f"  loader alone, {count} worker(s): malloc default {default:,.0f} samples/s "
            f"({', '.join(f'{r:,.0f}' for r in rates[False])}), freed memory kept {kept:,.0f} "
            f"({', '.join(f'{r:,.0f}' for r in rates[True])}): {kept / default:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300_000, help="generated training graph size")
    parser.add_argument("--items", type=int, default=4_000)
    parser.add_argument(
        "--graph",
        type=Path,
        help="a graph folder the pipeline wrote (e.g. data/04_feature/dgsr_train_graph) instead",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[512, 8192])
    parser.add_argument("--batches", type=int, default=9, help="batches timed per batch size")
    parser.add_argument(
        "--workers", type=int, nargs="*", default=[1, 2], help="loader-alone runs (none: skip)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # a loader worker's setting

    graph = TemporalGraph.load(args.graph) if args.graph else _graph(args.events, args.items)
    samples = SampleSet.from_events(graph, training_sample_events(graph))
    print(f"graph: {graph.num_events:,} events, {graph.num_items:,} items; one core")
    for batch_size in args.batch_sizes:
        print(f"\nbatch {batch_size:,}:")
        stages(graph, samples, batch_size, args.batches)
        replaced_choices(graph, samples, batch_size)
        loader_alone(graph, samples, batch_size, args.workers)


if __name__ == "__main__":
    main()

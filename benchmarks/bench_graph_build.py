"""Peak memory of the temporal graph build, per event, on random events (one fresh process).

    .venv/bin/python benchmarks/bench_graph_build.py --events 20000000

Prints the build's peak RSS above its input (Linux ``/proc``: the process's high-water mark is reset
once, just before the build, in this throwaway process) in bytes per event next to the size of the
graph's own arrays (53 bytes per event). At OTTO scale (224M events) every byte per event is 0.22 GB:
this is the figure that decides whether ``build_full_graph`` fits a 24 GB machine.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import numpy as np
import polars as pl

from gnn_recsys.graph.temporal_graph import build_temporal_graph


def memory_gb(field: str) -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(f"{field}:"))
    return int(line.split()[1]) / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.events
    n_items = max(1_000, n // 120)  # OTTO: 1.86M items for 224M events
    events = pl.DataFrame(
        {
            "session": np.sort(rng.integers(0, max(1, n // 17), n)).astype(np.int32),
            "aid": rng.integers(0, n_items, n).astype(np.int32),
            "ts": (1_659_304_800_000 + rng.integers(0, 28 * 86_400_000, n)).astype(np.int64),
            "type": rng.integers(0, 3, n).astype(np.int8),
        }
    ).sort(["session", "ts"])
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts from here
    before = memory_gb("VmRSS")
    start = time.perf_counter()
    graph = build_temporal_graph(events, item_aids=np.arange(n_items, dtype=np.int32))
    seconds = time.perf_counter() - start
    added = memory_gb("VmHWM") - before
    arrays = sum(
        a.nbytes for a in (graph.item_view, graph.ev_item_pos, graph.ev_ts, graph.ev_item, graph.ev_type)
    )
    print(
        f"{n:,} events ({events.estimated_size() / 1e9:.2f} GB input): build {seconds:.1f} s, peak "
        f"{added:.2f} GB above the input = {added * 1024**3 / n:.0f} bytes/event (graph arrays "
        f"{arrays / n:.0f} bytes/event); at 224M events ~{added * 1024**3 / n * 224e6 / 1e9:.1f} GB"
    )


if __name__ == "__main__":
    main()

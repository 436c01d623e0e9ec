"""Cost of DGSR's co-occurrence start (``train.item_init: cooccurrence``) on a saved temporal graph:
wall time and peak RSS per event cap, each cap in its own process. Prints figures; nothing is asserted.

    .venv/bin/python benchmarks/bench_item_init.py --graph data/04_feature/dgsr_train_graph
    .venv/bin/python benchmarks/bench_item_init.py --graph <folder> --max-events 5000000 20000000

The graph is opened memory-mapped as the pipeline opens it; ``--max-events`` are the values of
``train.item_init_max_events`` to time (the last sessions holding at most that many events).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
import torch
from gnn_recsys.graph.cooccurrence import cooccurrence_embedding
from gnn_recsys.graph.temporal_graph import TemporalGraph
graph = TemporalGraph.load(sys.argv[1])
cap = None if sys.argv[2] == "all" else int(sys.argv[2])
torch.manual_seed(0)
start = time.perf_counter()
rows = cooccurrence_embedding(graph, int(sys.argv[3]), int(sys.argv[4]), max_events=cap)
seconds = time.perf_counter() - start
print(json.dumps({
    "seconds": seconds,
    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    "items_with_a_row": int((rows.abs().sum(dim=1) > 0).sum()),
    "num_items": graph.num_items,
    "num_events": graph.num_events,
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--graph", type=Path, required=True, help="a saved TemporalGraph folder")
    parser.add_argument("--max-events", nargs="+", default=["1000000", "5000000", "20000000"])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--window", type=int, default=2)
    args = parser.parse_args()
    meta = json.loads((args.graph / "meta.json").read_text())
    print(f"graph {args.graph}: {meta['num_events']:,} events, {meta['num_items']:,} items; d={args.dim}")
    print(
        f"{'max_events':>12} {'seconds':>9} {'peak RSS GB':>12} {'items with a row':>17} {'s per M events':>15}"
    )
    for cap in args.max_events:
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(args.graph), cap, str(args.dim), str(args.window)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        counted = min(result["num_events"], int(cap)) if cap != "all" else result["num_events"]
        print(
            f"{cap:>12} {result['seconds']:>9.1f} {result['peak_rss_gb']:>12.2f} "
            f"{result['items_with_a_row']:>17,} {result['seconds'] / (counted / 1e6):>15.2f}"
            f"   (process {time.perf_counter() - start:.0f} s)"
        )


if __name__ == "__main__":
    main()

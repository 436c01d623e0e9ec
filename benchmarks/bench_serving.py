"""Latency of the MLflow DGSR model answering one session, on a memory-mapped graph of ``--events``.

    python benchmarks/bench_serving.py --events 10000000

Builds (once, cached in ``--cache``) a synthetic graph, saves an untrained default DGSR as an MLflow
pyfunc model (weights do not change the work), loads it as a user would (``mlflow.pyfunc.load_model``)
and times ``predict`` on one session at a time: p50 / p90 over ``--requests`` sessions of 1-20 events,
CPU, one thread. Prints the load time too (the graph is opened memory-mapped once), and, as the
baseline of the same run, what appending the request costs as a lazy view (what ``predict`` does)
against copying the session-side arrays with the request at the end (what it did before).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import torch

from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.graph.temporal_graph import TemporalGraph, build_temporal_graph
from gnn_recsys.inference import InferenceConfig
from gnn_recsys.models.config import ModelConfig
from gnn_recsys.models.dgsr import DGSR
from gnn_recsys.serving.mlflow_model import DGSRRecommender, _signature, append_sessions, write_artifacts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/gnn_recsys_serving"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = args.cache / f"graph_{args.events}_{args.items}"
    if not (folder / "meta.json").exists():
        t0 = time.perf_counter()
        sessions = max(1, round(args.events / 14.9))
        config = SyntheticConfig(
            num_items=args.items, num_train_sessions=sessions, num_test_sessions=0, seed=0
        )
        build_temporal_graph(synthetic_events(config)).save(folder)
        print(f"built and saved the graph in {time.perf_counter() - t0:.0f} s")
    graph = TemporalGraph.load(folder)
    torch.manual_seed(0)
    model = DGSR.from_config(graph.num_items, ModelConfig())
    with tempfile.TemporaryDirectory() as tmp:
        inference = InferenceConfig(top_k=20)
        artifacts = write_artifacts(model, graph, inference, Path(tmp))
        path = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            path,
            python_model=DGSRRecommender(),
            artifacts=artifacts,
            model_config={"graph_path": str(folder)},
            signature=_signature(inference),
        )
        t0 = time.perf_counter()
        loaded = mlflow.pyfunc.load_model(str(path))
        load_s = time.perf_counter() - t0
        rng = np.random.default_rng(1)
        aids = np.asarray(graph.item_aid)
        start_ts = int(np.asarray(graph.ev_ts).max()) + 1000
        latencies, lazy_append, copied_append = [], [], []
        for request in range(args.requests + 5):
            n = int(rng.integers(1, 21))
            frame = pd.DataFrame(
                {
                    "session": np.full(n, 10**9 + request, dtype=np.int64),
                    "aid": aids[rng.integers(0, len(aids), n)].astype(np.int64),
                    "ts": start_ts + np.arange(n, dtype=np.int64) * 1000,
                    "type": np.zeros(n, dtype=np.int64),
                }
            )
            t0 = time.perf_counter()
            out = loaded.predict(frame)
            if request >= 5:  # the first calls warm caches and the page cache
                latencies.append(time.perf_counter() - t0)
            assert len(out) == 20
            t0 = time.perf_counter()
            view, _, _ = append_sessions(graph, pl.from_pandas(frame))
            lazy_append.append(time.perf_counter() - t0)
            TemporalGraph(**{name: np.asarray(array) for name, array in view.arrays().items()})
            copied_append.append(time.perf_counter() - t0)
    ms = np.array(latencies) * 1000
    print(
        f"graph {graph.num_events:,} events, {graph.num_items:,} items (memory-mapped); load {load_s:.1f} s; "
        f"predict one session: p50 {np.percentile(ms, 50):.0f} ms, p90 {np.percentile(ms, 90):.0f} ms "
        f"over {len(ms)} requests (CPU, 1 thread)"
    )
    lazy, copied = np.median(lazy_append) * 1000, np.median(copied_append) * 1000
    print(
        f"appending the request: lazy view p50 {lazy:.2f} ms; copying the session-side arrays "
        f"p50 {copied:.1f} ms ({copied / lazy:.0f}x)"
    )


if __name__ == "__main__":
    main()

"""DGSR throughput on the restructured stack: training samples/s and inference sessions/s by worker count,
and the thread policy on a loaded machine. Prints figures; nothing is asserted.

    .venv/bin/python benchmarks/bench_training.py                   # ~1M events, workers 0 1 2
    .venv/bin/python benchmarks/bench_training.py --workers 0 --batch-sizes 512 1024 2048
    .venv/bin/python benchmarks/bench_training.py --load 3          # + ACTIVE vs PASSIVE OpenMP wait
                                                                    #   policy with 3 busy processes beside
                                                                    #   (--load 0: the same, idle machine)

Data: the project's synthetic OTTO generator (``--events``, ``--items``), one training sample per
predictable event, the default :class:`~gnn_recsys.training.config.FitConfig` with each epoch capped
at ``--samples`` samples. Every figure of one invocation comes from the same data and config.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.graph.sampler import training_samples
from gnn_recsys.graph.temporal_graph import TemporalGraph, build_temporal_graph
from gnn_recsys.inference import InferenceConfig, recommend_by_type
from gnn_recsys.loader import LoaderConfig, SampleSet
from gnn_recsys.training import FitConfig, train_dgsr


def build_graph(num_events: int, num_items: int, folder: Path) -> TemporalGraph:
    if not (folder / "meta.json").exists():
        sessions = max(1, round(num_events / 14.9))  # the generator's mean session length
        events = synthetic_events(
            SyntheticConfig(num_items=num_items, num_train_sessions=sessions, num_test_sessions=0, seed=0)
        )
        build_temporal_graph(events).save(folder)
    return TemporalGraph.load(folder)  # memory-mapped, as the pipeline loads it


def fit_config(samples: int, workers: int, batch_size: int = 512) -> FitConfig:
    train = {"max_epochs": 1, "samples_per_epoch": samples, "progress": False, "device": "cpu"}
    return FitConfig().with_(train={**train, "batch_size": batch_size}, loader={"num_workers": workers})


def train_rate(graph: TemporalGraph, samples: SampleSet, config: FitConfig) -> float:
    result = train_dgsr(graph, samples, None, config)
    return result.history[0]["train_samples_per_s"]


def inference_rate(graph: TemporalGraph, sessions: int, workers: int) -> float:
    import torch  # noqa: PLC0415

    from gnn_recsys.models.dgsr import DGSR  # noqa: PLC0415

    torch.manual_seed(0)
    model = DGSR.from_config(graph.num_items, FitConfig().model).eval()
    t0 = time.perf_counter()
    recommend_by_type(
        model, graph, list(range(sessions)), InferenceConfig(), loader=LoaderConfig(num_workers=workers)
    )
    return sessions / (time.perf_counter() - t0)


def _busy(stop: float) -> None:
    x = 0
    while time.time() < stop:
        x += 1


def policy_under_load(args: argparse.Namespace, folder: Path) -> None:
    """Train one capped epoch in a fresh process per policy while ``--load`` busy processes run."""
    here, cap = str(Path(__file__).parent), args.samples // 4
    code = (
        f"import sys; from pathlib import Path; sys.path.insert(0, {here!r});"
        "import bench_training as b; from gnn_recsys.graph.sampler import training_samples;"
        "from gnn_recsys.loader import SampleSet;"
        f"g = b.build_graph(0, 0, Path({str(folder)!r})); s = SampleSet(*training_samples(g));"
        f"print(b.train_rate(g, s, b.fit_config({cap}, 0)))"
    )
    print(f"\nthread policy with {args.load} busy processes beside training (workers 0, 1 epoch):")
    # libgomp: PASSIVE sleeps at once, ACTIVE spins without end, a spin count spins that long then sleeps
    policies = {"ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"}, "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}}
    policies["GOMP_SPINCOUNT=100000"] = {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "100000"}
    for policy, variables in policies.items():
        stop = time.time() + 3600
        load = [mp.Process(target=_busy, args=(stop,), daemon=True) for _ in range(args.load)]
        for p in load:
            p.start()
        try:
            env = {**os.environ, **variables}  # an empty OMP_WAIT_POLICY: libgomp's default, unset
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            print(f"  {policy:24s} {float(out.stdout.strip().splitlines()[-1]):9.0f} samples/s")
        finally:
            for p in load:
                p.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=20_000, help="training samples timed per setting")
    parser.add_argument("--sessions", type=int, default=5_000, help="sessions scored per inference setting")
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[512], help="training batch sizes (inference: 512)"
    )
    parser.add_argument(
        "--load", type=int, default=None, help="busy processes for the thread-policy check (0: idle)"
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/gnn_recsys_bench_graph"))
    args = parser.parse_args()
    folder = args.cache / f"{args.events}_{args.items}"
    graph = build_graph(args.events, args.items, folder)
    samples = SampleSet(*training_samples(graph))
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; graph: {graph.num_events:,} events, "
        f"{graph.num_items:,} items, {graph.num_sessions:,} sessions"
    )
    print(f"{'workers':>8} {'batch':>6} {'train samples/s':>16} {'inference sessions/s':>21}")
    for workers in args.workers:
        for position, batch_size in enumerate(args.batch_sizes):
            train = train_rate(graph, samples, fit_config(args.samples, workers, batch_size))
            # inference once per worker count: its batch is the inference config's, not the training one
            infer = f"{inference_rate(graph, args.sessions, workers):.0f}" if position == 0 else ""
            print(f"{workers:>8} {batch_size:>6} {train:>16.0f} {infer:>21}")
    if args.load is not None:
        policy_under_load(args, folder)


if __name__ == "__main__":
    main()

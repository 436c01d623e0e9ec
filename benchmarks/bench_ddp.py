"""DistributedDataParallel throughput: one capped epoch under ``torchrun`` at each process count, next to
the same epoch in one plain process (no process group), with the same global batch. Prints figures;
nothing is asserted.

    .venv/bin/python benchmarks/bench_ddp.py                        # CPU: gloo, 1 and 2 processes
    .venv/bin/python benchmarks/bench_ddp.py --device cuda --nprocs 1 2 4   # nccl, one GPU per process

Each run is ``python -m torch.distributed.run --standalone --nproc_per_node=N -m
gnn_recsys.training.distributed`` (the documented entry point) on a generated graph and its typed
training samples written to ``--cache``; ``train.batch_size`` is ``--global-batch / N`` per process, so
every run takes the same optimiser steps over the same samples. On CPU the cores are split between the
processes (``OMP_NUM_THREADS``). samples/s: the epoch's samples of all ranks (all-reduced) per second,
from the JSON line the entry point prints after the epoch; "wall" includes starting the processes,
loading the graph and building the model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from bench_training import build_graph  # noqa: E402

from gnn_recsys.graph.sampler import training_sample_events  # noqa: E402
from gnn_recsys.loader import SampleSet  # noqa: E402
from gnn_recsys.training import FitConfig  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


def prepare(args: argparse.Namespace) -> Path:
    """Graph and typed training samples on disk, as the pipeline writes them before ``train_dgsr``."""
    folder = args.cache / f"{args.events}_{args.items}"
    graph = build_graph(args.events, args.items, folder / "graph")
    samples_path = folder / "train_samples.parquet"
    if not samples_path.exists():
        SampleSet.from_events(graph, training_sample_events(graph)).to_frame().write_parquet(samples_path)
    return folder


def run_epoch(
    folder: Path, args: argparse.Namespace, nprocs: int | None, threads: int | None = None
) -> tuple[float, float]:
    """(samples/s of all processes, wall seconds) of one capped epoch; ``nprocs`` None: no torchrun.

    On CPU each process gets ``threads`` threads (default: the cores split between the processes)."""
    processes = nprocs or 1
    config = FitConfig().with_(
        train={
            "max_epochs": 1,
            "samples_per_epoch": args.samples,
            "batch_size": args.global_batch // processes,
            "progress": False,
            "device": args.device,
        },
        loader={"num_workers": int(args.workers) if args.workers.isdigit() else args.workers},
    )
    params = folder / f"params_{processes}.yml"
    params.write_text(yaml.safe_dump({"dgsr": config.to_dict()}))
    entry = ["-m", "gnn_recsys.training.distributed"]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nprocs}"] if nprocs else []
    options = {
        "--graph": folder / "graph",
        "--params": params,
        "--train-samples": folder / "train_samples.parquet",
        "--val-samples": "",
        "--model": folder / "model.pt",
        "--history": folder / "history.json",
    }
    command = [sys.executable, *launcher, *entry, *[str(x) for item in options.items() for x in item]]
    paths = [str(SRC), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    if args.device == "cpu":
        env["OMP_NUM_THREADS"] = str(threads or max(1, (os.cpu_count() or 1) // processes))
    start = time.perf_counter()
    run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{run.stderr[-3000:]}")
    (epoch,) = [json.loads(line) for line in run.stdout.splitlines() if line.startswith('{"epoch"')]
    return epoch["train_samples_per_s"], wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=12_288, help="samples of the timed epoch")
    parser.add_argument("--global-batch", type=int, default=512, help="split evenly over the processes")
    parser.add_argument("--nprocs", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--workers", default="auto", help="loader workers per process (auto: the default)")
    parser.add_argument("--rounds", type=int, default=2, help="each setting this many times, in turn")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/gnn_recsys_bench_ddp"))
    args = parser.parse_args()
    if any(args.global_batch % n for n in args.nprocs):
        parser.error(f"--global-batch {args.global_batch} must divide by every --nprocs {args.nprocs}")
    folder = prepare(args)
    backend = "gloo" if args.device == "cpu" else "nccl"
    print(
        f"{os.cpu_count()} cores, device {args.device}; {args.events:,} generated events, {args.items:,} "
        f"items; one epoch of {args.samples:,} samples, global batch {args.global_batch}, loader workers "
        f"{args.workers}"
    )
    cores = os.cpu_count() or 1
    # (processes under torchrun or None, threads per process or None = the cores split between them)
    settings: dict[str, tuple[int | None, int | None]] = {"one process, no DDP": (None, None)}
    if args.device == "cpu" and cores > 1:  # what the second core brings to one process
        settings["one process, no DDP, 1 thread"] = (None, 1)
    settings |= {f"torchrun, {n} x {backend} DDP": (n, None) for n in args.nprocs}
    rates: dict[str, list[float]] = {name: [] for name in settings}
    walls: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, (nprocs, threads) in settings.items():
            rate, wall = run_epoch(folder, args, nprocs, threads)
            rates[name].append(rate)
            walls[name].append(wall)
    plain = max(rates["one process, no DDP"])
    print(f"{'setting':<34}{'samples/s (each round)':>26}{'vs plain':>10}{'wall s':>9}")
    for name in settings:
        each = " / ".join(f"{r:,.0f}" for r in rates[name])
        print(f"{name:<34}{each:>26}{max(rates[name]) / plain:>9.2f}x{min(walls[name]):>9.1f}")


if __name__ == "__main__":
    main()

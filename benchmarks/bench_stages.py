"""The pipeline stage by stage on generated OTTO-format data: wall time and peak RSS of each stage.

    .venv/bin/python benchmarks/bench_stages.py --fraction 0.01      # 1% of OTTO (~2.2M events)
    .venv/bin/python benchmarks/bench_stages.py --fraction 1.0 --raw /data/otto_synth   # full size

Each stage is a separate ``kedro run --pipelines=<stage>`` (``--nodes`` for DGSR's two training
nodes) in a scratch copy of the project, so its peak RSS is its own (``wait4``'s ``ru_maxrss``).
Budgets keep it affordable on 2 cores: DGSR trains one epoch of ``--train-samples`` samples, and
scoring is timed on ``--score-sessions`` local test sessions and extrapolated to all test sessions
of the local split and the test file (the candidate lists of the full job). Printed per stage: wall
time, peak RSS, input MB/s for ingestion, and for capped stages the extrapolation to the full job
(training: one epoch of every training sample).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

PROJECT = Path(__file__).resolve().parents[1]
LAYERS = ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
          "07_model_output", "08_reporting")  # fmt: skip

SCORE_CODE = """
import json, sys, time
import numpy as np, polars as pl, torch
from gnn_recsys.datasets import TemporalGraphDataset, TorchDataset
from gnn_recsys.inference import InferenceConfig, recommend_by_type
from gnn_recsys.loader import LoaderConfig
from gnn_recsys.pipelines.training.nodes import load_dgsr
n = int(sys.argv[1])
graph = TemporalGraphDataset("data/04_feature/local_graph").load()
model = load_dgsr(TorchDataset("data/06_models/dgsr_model.pt").load())
sessions = pl.read_parquet("data/03_primary/local_test_inputs.parquet")["session"].unique().to_numpy()[:n]
t0 = time.perf_counter()
recommend_by_type(model, graph, graph.session_to_index(sessions), InferenceConfig(), loader=LoaderConfig())
print(json.dumps({"sessions": len(sessions), "seconds": time.perf_counter() - t0}))
"""


def run_stage(name: str, args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """``(wall s, peak RSS GB, stdout)`` of one child process."""
    t0 = time.perf_counter()
    process = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        print(out[-3000:])
        raise SystemExit(f"stage {name} failed")
    return wall, usage.ru_maxrss / 1024**2, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fraction", type=float, default=0.01, help="fraction of OTTO's sessions and items")
    parser.add_argument("--raw", type=Path, help="folder with train.jsonl/test.jsonl (generated if missing)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gnn_recsys_stages"))
    parser.add_argument("--train-samples", type=int, default=50_000)
    parser.add_argument("--score-sessions", type=int, default=2_000)
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["baselines"],
        help="stages to leave out (co-visitation at full size takes 1-2 h on 2 cores: bench_covisitation.py)",
    )  # fmt: skip
    args = parser.parse_args()
    raw = args.raw or args.work / f"raw_{args.fraction}"
    python = sys.executable
    env = {**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "1"}
    if not (raw / "train.jsonl").exists():
        cmd = [python, str(PROJECT / "benchmarks" / "generate_otto_scale.py"), "--out", str(raw)]
        wall, rss, _ = run_stage("generate", [*cmd, "--fraction", str(args.fraction)], PROJECT, env)
        print(f"generated {raw} in {wall:.0f} s (peak {rss:.1f} GB)")
    project = args.work / "project"
    shutil.rmtree(project, ignore_errors=True)
    (project / "src").mkdir(parents=True)
    shutil.copy(PROJECT / "pyproject.toml", project)
    shutil.copytree(PROJECT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    for layer in LAYERS:
        (project / "data" / layer).mkdir(parents=True)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
    params = (
        f"raw_train_path={raw / 'train.jsonl'},raw_test_path={raw / 'test.jsonl'},ingestion.progress=false,"
        f"dgsr.train.max_epochs=1,dgsr.train.samples_per_epoch={args.train_samples},dgsr.train.progress=false"
    )
    kedro = [python, "-m", "kedro", "run", "--params", params]
    stages = [
        ("ingestion", ["--pipelines=ingestion"]),
        ("data_split", ["--pipelines=data_split"]),
        ("baselines", ["--pipelines=baselines"]),
        ("graph_construction", ["--pipelines=graph_construction"]),
        ("dgsr_train_graph", ["--nodes=dgsr_training.make_dgsr_train_graph"]),
        ("dgsr_samples", ["--nodes=dgsr_training.make_dgsr_samples"]),
        ("dgsr_train (capped)", ["--nodes=dgsr_training.train_dgsr"]),
    ]
    input_mb = sum((raw / f).stat().st_size for f in ("train.jsonl", "test.jsonl")) / 1e6
    print(f"{'stage':<22} {'wall s':>8} {'peak RSS GB':>12}  note")
    for name, extra in stages:
        if name in args.skip:
            print(f"{name:<22} {'skipped':>8}", flush=True)
            continue
        wall, rss, _ = run_stage(name, [*kedro, *extra], project, env)
        note = f"{input_mb / wall:,.0f} MB/s of JSONL" if name == "ingestion" else ""
        if name.startswith("dgsr_train"):
            samples = len(
                __import__("polars").read_parquet(project / "data/05_model_input/dgsr_train_samples.parquet")
            )
            note = (
                f"one full epoch ({samples:,} samples) ~ {wall * samples / args.train_samples / 3600:,.1f} h"
            )
        print(f"{name:<22} {wall:>8.0f} {rss:>12.2f}  {note}", flush=True)
    wall, rss, out = run_stage(
        "dgsr_scoring", [python, "-c", SCORE_CODE, str(args.score_sessions)], project, env
    )
    timing = json.loads(out.strip().splitlines()[-1])
    total = sum(
        pl.read_parquet(project / "data" / path)["session"].n_unique()
        for path in ("03_primary/local_test_inputs.parquet", "02_intermediate/test_events.parquet")
    )
    rate = timing["sessions"] / timing["seconds"]
    print(
        f"{'dgsr_scoring (capped)':<22} {wall:>8.0f} {rss:>12.2f}  {rate:,.0f} sessions/s: all {total:,} ~ {total / rate / 3600:,.1f} h"
    )


if __name__ == "__main__":
    main()

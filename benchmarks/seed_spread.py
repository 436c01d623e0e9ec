"""DGSR over several training seeds against the baselines: how much of a difference is noise.

One training run's recall moves with its seed (initial weights, sample order, negatives, dropout). On
the development set (YOOCHOOSE 100k, 4,082 test sessions) four seeds of the defaults gave clicks
recall@20 0.6805-0.6889: a standard deviation of ~0.004, as large as most changes one wants to
measure. This script trains DGSR with each seed on the same data, split, graphs and samples, and
prints each type's recall@20 and the OTTO score for the baselines (deterministic) and for DGSR (each
seed, mean, standard deviation), and per seed the test sessions whose next click only DGSR / only
co-visitation finds, with a two-sided sign test.

    python benchmarks/seed_spread.py --seeds 42 43 44 45 \\
        --params "raw_format=events_table,raw_train_path=<train.tsv>,columns.session=SessionId,columns.aid=ItemId,columns.ts=Time,ts_unit=s,split.test_days=1"
    python benchmarks/seed_spread.py --seeds 42 43 --env paper --params "<the same>"
    python benchmarks/seed_spread.py --seeds 42 43 44               # the default synthetic data

Run it from the project root: it runs ``kedro run --pipeline=dgsr_otto`` there, once up to the
training samples and the baselines' local candidates, then from ``train_dgsr`` to
``dgsr_local_candidates`` once per seed (``dgsr.train.seed``; each seed with its own checkpoint folder,
so an interrupted sweep resumes where it stopped). Every run is an MLflow run; ``data/`` keeps the last
seed's outputs, and each seed's DGSR candidates are copied to ``--out``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from gnn_recsys.evaluation.metrics import evaluate, label_positions

BASELINES = ("popularity", "recent_items", "covisitation")
COLUMNS = ("recall@20_clicks", "recall@20_carts", "recall@20_orders", "score")
CHECKPOINTS = "data/06_models/seed_spread"  # one folder per seed, removed when the sweep is done


def kedro_run(project: Path, env: str | None, params: str, *options: str) -> float:
    """One ``kedro run`` of ``dgsr_otto`` in its own process; its wall seconds."""
    command = [sys.executable, "-m", "kedro", "run", "--pipeline=dgsr_otto", *options]
    if env:
        command.append(f"--env={env}")
    if params:
        command.append(f"--params={params}")
    began = time.perf_counter()
    done = subprocess.run(command, cwd=project, env={**os.environ, "DO_NOT_TRACK": "1"}, check=False)
    if done.returncode:
        raise SystemExit(f"kedro run failed (exit {done.returncode}): {' '.join(command)}")
    return time.perf_counter() - began


def load_catalog(project: Path, env: str | None):  # noqa: ANN201 - Kedro's catalog type
    from kedro.framework.session import KedroSession  # noqa: PLC0415
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env) as session:
        return session.load_context().catalog


def click_hits(candidates: pl.DataFrame, labels: pl.DataFrame) -> pl.Series:
    """Per test session with a click label (in session order): whether the first 20 of its clicks
    list hold it, as :func:`evaluate` reads the list."""
    positions = label_positions(candidates, labels, max_rank=20).filter(pl.col("type") == 0)
    return positions.sort("session")["position"] > 0


def sign_test(only_a: int, only_b: int) -> float:
    """Two-sided sign test p-value (normal approximation with continuity correction)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    z = (abs(only_a - only_b) - 1) / math.sqrt(n)
    return math.erfc(max(z, 0.0) / math.sqrt(2))


def _value(metrics: dict, name: str) -> float | None:
    """A metric as a float; None where the data has no label of that type."""
    value = metrics.get(name)
    return None if value is None or math.isnan(value) else float(value)


def _cells(values: list[float | None]) -> str:
    return "  ".join(f"{'-':>8}" if v is None else f"{v:8.4f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44], help="dgsr.train.seed values")
    parser.add_argument("--params", default="", help="kedro --params for every run (the data, overrides)")
    parser.add_argument("--env", default=None, help="kedro --env for every run, e.g. paper")
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="the Kedro project root")
    parser.add_argument("--out", type=Path, default=Path("data/08_reporting/seed_spread"))
    parser.add_argument(
        "--skip-prepare", action="store_true", help="reuse the samples and baselines in data/"
    )
    args = parser.parse_args()
    if len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds must be distinct")
    project = args.project.resolve()
    out = args.out if args.out.is_absolute() else project / args.out
    out.mkdir(parents=True, exist_ok=True)
    shared = ",".join(p for p in (args.params, "dgsr.train.progress=false") if p)

    if not args.skip_prepare:
        targets = [f"baselines.{m}_local_candidates" for m in BASELINES]
        targets += ["graph.build_local_graph", "dgsr_training.make_dgsr_samples"]  # what the seeds share
        seconds = kedro_run(project, args.env, shared, f"--to-nodes={','.join(targets)}")
        print(f"prepared the data, samples and baselines in {seconds:.0f} s", flush=True)

    catalog = load_catalog(project, args.env)
    walls = {}
    for seed in args.seeds:
        checkpoints = f"{CHECKPOINTS}/{args.env or 'base'}_seed_{seed}"
        params = f"{shared},dgsr.train.seed={seed},dgsr.checkpoint_dir={checkpoints}"
        walls[seed] = kedro_run(
            project,
            args.env,
            params,
            "--from-nodes=dgsr_training.train_dgsr",
            "--to-nodes=dgsr_training.dgsr_local_candidates",
        )
        catalog.load("candidates_dgsr").write_parquet(out / f"candidates_dgsr_seed_{seed}.parquet")
        print(f"seed {seed}: trained and scored in {walls[seed]:.0f} s", flush=True)

    labels = catalog.load("local_test_labels")
    inputs = catalog.load("local_test_inputs")
    results = {m: evaluate(catalog.load(f"candidates_{m}"), labels, history=inputs) for m in BASELINES}
    covis_hits = click_hits(catalog.load("candidates_covisitation"), labels)
    per_seed, tests = {}, {}
    for seed in args.seeds:
        candidates = pl.read_parquet(out / f"candidates_dgsr_seed_{seed}.parquet")
        per_seed[seed] = evaluate(candidates, labels, history=inputs)
        hits = click_hits(candidates, labels)
        only_dgsr, only_covis = int((hits & ~covis_hits).sum()), int((~hits & covis_hits).sum())
        tests[seed] = (only_dgsr, only_covis, sign_test(only_dgsr, only_covis))

    print(f"\n{'model':<24}  " + "  ".join(f"{c.removeprefix('recall@20_'):>8}" for c in COLUMNS))
    for model, metrics in results.items():
        print(f"{model:<24}  {_cells([_value(metrics, c) for c in COLUMNS])}")
    for seed, metrics in per_seed.items():
        only_dgsr, only_covis, p = tests[seed]
        print(
            f"{'dgsr seed ' + str(seed):<24}  {_cells([_value(metrics, c) for c in COLUMNS])}   clicks only DGSR {only_dgsr} / "
            f"only co-visitation {only_covis} (p = {p:.2f}), {walls[seed]:.0f} s"
        )
    means, sds = [], []
    for name in COLUMNS:
        values = [v for m in per_seed.values() if (v := _value(m, name)) is not None]
        means.append(statistics.fmean(values) if values else None)
        sds.append(statistics.stdev(values) if len(values) > 1 else None)
    print(f"{'dgsr mean':<24}  {_cells(means)}")
    print(f"{'dgsr sd (n-1)':<24}  {_cells(sds)}")
    n_clicks = len(covis_hits)
    print(
        f"\n{n_clicks} test sessions with a click label; one session is {1 / max(n_clicks, 1):.4f} of clicks recall"
    )
    shutil.rmtree(project / CHECKPOINTS, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Preprocessing on Spark (local mode) against the default polars/DuckDB path, same generated data.

    .venv/bin/python benchmarks/bench_spark.py --sessions 70000 --master "local[2]"

Generates synthetic OTTO JSONL (``--sessions`` train sessions, ~14 events each: 70k sessions is ~1M
events), then times each stage on both engines, each writing its output as parquet like the pipeline
does: ingestion (JSONL -> event table), the local-validation split (three tables), co-visitation
counting (every pair's weight plus each aid's top neighbours). Spark's JVM start is timed apart.
Checks that both engines wrote the same tables (pairs: same keys, weights within 1e-9) and prints
one row per stage. Run it alone on a quiet machine: on a shared one the figures say little.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from gnn_recsys.baselines.covisitation import CovisitationConfig, CovisitationModel
from gnn_recsys.data.ingest import ingest_jsonl
from gnn_recsys.data.split import split_events
from gnn_recsys.data.synthetic import SyntheticConfig, write_synthetic_otto


def _spark_read(folder: Path) -> pl.DataFrame:
    table = pl.read_parquet(folder / "*.parquet")
    if "pos" in table.columns:
        return table.sort(["session", "pos"]).drop("pos")
    return table.sort(table.columns)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=70_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_spark_"))
    work.mkdir(parents=True, exist_ok=True)
    train = work / "train.jsonl"
    config = SyntheticConfig(num_items=50_000, num_train_sessions=args.sessions, num_test_sessions=0, seed=1)
    began = time.perf_counter()
    counts = write_synthetic_otto(train, work / "test.jsonl", config)
    print(
        f"data: {counts['train_events']:,.0f} events, {counts['train_sessions']:,.0f} sessions, "
        f"{train.stat().st_size / 1e6:.0f} MB JSONL ({time.perf_counter() - began:.0f} s to generate)"
    )
    covis = CovisitationConfig(top_neighbours=20)
    rows: list[tuple[str, float, float]] = []

    # ---- default engine
    t = time.perf_counter()
    ingest_jsonl(train, work / "polars_events.parquet", progress=False)
    events = pl.read_parquet(work / "polars_events.parquet")
    polars_ingest = time.perf_counter() - t
    t = time.perf_counter()
    split = split_events(events, test_days=7, seed=42)
    for name, table in (("train", split.train), ("inputs", split.test_inputs), ("labels", split.test_labels)):
        table.write_parquet(work / f"polars_{name}.parquet")
    polars_split = time.perf_counter() - t
    t = time.perf_counter()
    fitted = pl.concat([split.train, split.test_inputs])
    top = CovisitationModel.fit(fitted, covis).neighbours
    top.write_parquet(work / "polars_top.parquet")
    polars_covis = time.perf_counter() - t

    # ---- Spark
    from gnn_recsys.spark.covisitation import pair_weights, top_neighbours  # noqa: PLC0415
    from gnn_recsys.spark.events import read_otto_jsonl  # noqa: PLC0415
    from gnn_recsys.spark.session import spark_session  # noqa: PLC0415
    from gnn_recsys.spark.split import split_events_spark  # noqa: PLC0415

    t = time.perf_counter()
    spark = spark_session(
        {"spark.master": args.master, "spark.sql.shuffle.partitions": str(args.shuffle_partitions)}
    )
    spark.range(1).count()
    startup = time.perf_counter() - t
    out = work / "spark"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    spark_events, _ = read_otto_jsonl(spark, train)
    spark_events.write.parquet(str(out / "events"))
    spark_ingest = time.perf_counter() - t
    t = time.perf_counter()
    stored = spark.read.parquet(str(out / "events"))
    result = split_events_spark(stored, test_days=7, seed=42)
    for name, table in (
        ("train", result.train),
        ("inputs", result.test_inputs),
        ("labels", result.test_labels),
    ):
        table.write.parquet(str(out / name))
    spark_split = time.perf_counter() - t
    t = time.perf_counter()
    fitted_on = spark.read.parquet(str(out / "train")).unionByName(spark.read.parquet(str(out / "inputs")))
    top_neighbours(pair_weights(fitted_on, covis), covis.top_neighbours).write.parquet(str(out / "top"))
    spark_covis = time.perf_counter() - t
    rows += [
        ("ingestion (JSONL -> events)", polars_ingest, spark_ingest),
        ("split (train, inputs, labels)", polars_split, spark_split),
        ("co-visitation top neighbours", polars_covis, spark_covis),
    ]

    # ---- same tables?
    assert _spark_read(out / "events").equals(events)
    assert _spark_read(out / "train").equals(split.train)
    assert _spark_read(out / "inputs").equals(split.test_inputs)
    assert _spark_read(out / "labels").equals(split.test_labels)
    spark_top = pl.read_parquet(out / "top" / "*.parquet")
    joined = top.join(spark_top, on=["aid", "neighbour"], how="inner")
    same_keys = joined.height / top.height
    np.testing.assert_allclose(joined["weight_right"], joined["weight"], rtol=1e-6)
    print(f"tables equal; top neighbours: {same_keys:.4%} of rows with the same (aid, neighbour)")

    print(f"Spark JVM start ({args.master}): {startup:.1f} s")
    print(f"{'stage':32} {'polars (s)':>11} {'spark (s)':>10}")
    for name, a, b in rows:
        print(f"{name:32} {a:11.1f} {b:10.1f}")
    print(f"{'total':32} {sum(r[1] for r in rows):11.1f} {sum(r[2] for r in rows):10.1f}")
    spark.stop()
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

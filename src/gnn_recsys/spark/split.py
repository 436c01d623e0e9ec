"""The official OTTO local-validation split on Spark: the same tables as
:func:`gnn_recsys.data.split.split_events` (see its module docstring for the algorithm).

The seeded random cut is reproduced exactly, not approximated: the test sessions' lengths (one row per
test session, ~1.7M rows and ~27 MB for OTTO) are collected in ascending session order and passed
through the default path's own :func:`~gnn_recsys.data.split.draw_cut_points`; the cut points go back
to the executors as a broadcast table. Same lengths in the same order and the same seed give the same
draws, so both paths cut every session at the same event.

Three intermediate tables (the flagged events, train, test) are persisted (memory, then disk) because
the counts and the outputs read each several times; they stay cached for the life of the session.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gnn_recsys.data.schema import CART, CLICK, EVENT_TYPE_CODES, MS_PER_DAY, ORDER
from gnn_recsys.data.split import draw_cut_points

logger = logging.getLogger(__name__)

_SPARK_COLUMNS = ("session", "aid", "ts", "type", "pos")


@dataclass
class SparkSplit:
    """Outcome of :func:`split_events_spark`: Spark tables (event tables keep ``pos``) and counts."""

    train: DataFrame
    test_inputs: DataFrame
    test_labels: DataFrame
    split_ts: int
    max_ts: int
    counts: dict[str, int] = field(default_factory=dict)

    def stats(self) -> dict[str, Any]:
        """The same keys and values as :meth:`gnn_recsys.data.split.SplitResult.stats`."""
        return {"max_ts": self.max_ts, "split_ts": self.split_ts, **self.counts}


def _with_session_size(frame: DataFrame) -> DataFrame:
    return frame.withColumn("_n", F.count(F.lit(1)).over(Window.partitionBy("session")))


def split_events_spark(events: DataFrame, test_days: int = 7, seed: int = 42) -> SparkSplit:
    """Split a Spark event table (with ``pos``) into trimmed train, truncated test sessions and labels."""
    if test_days < 0:
        raise ValueError(f"split_events_spark: test_days must be >= 0, got {test_days}")
    missing = [c for c in _SPARK_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"split_events_spark: missing column(s) {missing}; got columns {events.columns}")
    frame = events.select(*_SPARK_COLUMNS)
    top = frame.agg(F.max("ts").alias("max_ts"), F.count(F.lit(1)).alias("events")).first()
    assert top is not None
    if not top["events"]:
        raise ValueError("split_events_spark: the event table is empty")
    max_ts = int(top["max_ts"])
    split_ts = max_ts - test_days * MS_PER_DAY

    # The session's first event in file order decides: a session starting after the split is test.
    in_order = Window.partitionBy("session").orderBy("pos")
    # kept (memory, then disk): the counts, train and test all read it, and each would redo the window
    flagged = frame.withColumn("_is_test", F.first("ts").over(in_order) > F.lit(split_ts)).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    overall = flagged.agg(
        F.count(F.lit(1)).alias("events"),
        F.count_distinct("session").alias("sessions"),
        F.sum(F.col("_is_test").cast("long")).alias("test_events_full"),
        F.count_distinct(F.when(F.col("_is_test"), F.col("session"))).alias("test_sessions_full"),
    ).first()
    assert overall is not None
    counts: dict[str, int] = {
        "events": int(overall["events"]),
        "sessions": int(overall["sessions"]),
        "test_sessions_full": int(overall["test_sessions_full"]),
        "test_events_full": int(overall["test_events_full"] or 0),
    }

    trimmed = flagged.filter(~F.col("_is_test") & (F.col("ts") < split_ts)).drop("_is_test")
    train = (
        _with_session_size(trimmed).filter(F.col("_n") >= 2).drop("_n").persist(StorageLevel.MEMORY_AND_DISK)
    )
    train_counts = train.agg(
        F.count(F.lit(1)).alias("events"), F.count_distinct("session").alias("sessions")
    ).first()
    assert train_counts is not None
    counts["train_sessions"] = int(train_counts["sessions"])
    counts["train_events"] = int(train_counts["events"])
    counts["train_sessions_dropped_short"] = (
        counts["sessions"] - counts["test_sessions_full"] - counts["train_sessions"]
    )

    test_full = flagged.filter(F.col("_is_test")).drop("_is_test")
    known = test_full.join(train.select("aid").distinct(), on="aid", how="left_semi")
    test = _with_session_size(known).filter(F.col("_n") >= 2).drop("_n").persist(StorageLevel.MEMORY_AND_DISK)

    # Cut points: the default path's own draw over the lengths in ascending session order.
    sizes = test.groupBy("session").agg(F.count(F.lit(1)).alias("n")).orderBy("session").toArrow()
    sessions = sizes.column("session").to_numpy()
    lengths = sizes.column("n").to_numpy().astype(np.int64)
    cut = draw_cut_points(lengths, seed)
    counts["test_events_unknown_aid"] = counts["test_events_full"] - int(known.count())
    counts["test_sessions"] = len(lengths)
    counts["test_sessions_dropped_short"] = counts["test_sessions_full"] - counts["test_sessions"]
    counts["test_input_events"] = int(cut.sum())
    counts["test_future_events"] = int((lengths - cut).sum())

    spark = events.sparkSession
    cuts = spark.createDataFrame(
        pa.table({"session": pa.array(sessions, pa.int32()), "_cut": pa.array(cut, pa.int64())}),
        schema=T.StructType(
            [T.StructField("session", T.IntegerType(), False), T.StructField("_cut", T.LongType(), False)]
        ),
    )
    ranked = test.join(F.broadcast(cuts), on="session").withColumn("_rank", F.row_number().over(in_order) - 1)
    observed = F.col("_rank") < F.col("_cut")
    test_inputs = ranked.filter(observed).select(*_SPARK_COLUMNS)
    future = ranked.filter(~observed)

    first_click = (
        future.filter(F.col("type") == CLICK)
        .groupBy("session")
        .agg(F.min_by("aid", "_rank").alias("aid"))
        .select("session", F.lit(CLICK).cast(T.ByteType()).alias("type"), "aid")
    )
    later = future.filter(F.col("type").isin(CART, ORDER)).select("session", "type", "aid").distinct()
    test_labels = first_click.unionByName(later).select(
        F.col("session").cast(T.IntegerType()),
        F.col("type").cast(T.ByteType()),
        F.col("aid").cast(T.IntegerType()),
    )
    label_counts = {
        row["type"]: row
        for row in test_labels.groupBy("type")
        .agg(F.count(F.lit(1)).alias("rows"), F.count_distinct("session").alias("sessions"))
        .collect()
    }
    for type_name, code in EVENT_TYPE_CODES.items():
        row = label_counts.get(code)
        counts[f"label_sessions_{type_name}"] = int(row["sessions"]) if row else 0
        counts[f"label_rows_{type_name}"] = int(row["rows"]) if row else 0

    result = SparkSplit(train, test_inputs, test_labels, split_ts=split_ts, max_ts=max_ts, counts=counts)
    logger.info("OTTO split on Spark (test_days=%d, seed=%d): %s", test_days, seed, result.stats())
    return result

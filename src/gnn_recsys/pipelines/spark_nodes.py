"""The Spark implementations of the ingestion and split nodes (``kedro run --env spark``).

Called by the default nodes when the engine is Spark; same inputs and outputs, except that event
tables and labels are Spark DataFrames (event tables with ``pos``, see :mod:`gnn_recsys.spark`).
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from gnn_recsys.pipelines.ingestion.nodes import rejects_path
from gnn_recsys.pipelines.mlflow_metrics import mlflow_metrics
from gnn_recsys.spark.events import empty_events, read_otto_jsonl
from gnn_recsys.spark.split import split_events_spark

logger = logging.getLogger(__name__)


def _read(spark: SparkSession, path: str, role: str, min_events: int, params: dict[str, Any]):
    events, report = read_otto_jsonl(
        spark,
        path,
        min_events=min_events,
        on_bad_line=params.get("on_bad_line", "raise"),
        rejects_path=rejects_path(params, role, path),
        max_bad_share=params.get("max_bad_share", 1.0),
    )
    if report.events == 0:
        hint = "nothing to split or train on" if role == "train" else "leave raw_test_path unset"
        raise ValueError(f"{path}: the {role} file holds no events ({report.bytes} bytes): {hint}")
    return events, report.as_dict()


def ingest_events_spark(
    raw_sources: dict[str, Any], params: dict[str, Any]
) -> tuple[DataFrame, DataFrame, dict[str, Any], dict[str, dict[str, float]]]:
    """OTTO JSONL train (sessions >= 2 events) and optional test file -> Spark event tables."""
    if raw_sources.get("format", "otto_jsonl") != "otto_jsonl":
        raise ValueError(
            f"ingestion.engine=spark reads OTTO JSONL only, got raw_format={raw_sources.get('format')!r}; "
            "ingest an event table with the default engine (without --env spark)"
        )
    spark = SparkSession.active()
    train_path, test_path = raw_sources["train_path"], raw_sources.get("test_path")
    events, train_report = _read(spark, train_path, "train", 2, params)
    test_report: dict[str, Any] = {}
    if test_path:
        test_events, test_report = _read(spark, test_path, "test", 1, params)
        overlap = (
            events.select("session").distinct().join(test_events.select("session").distinct(), "session")
        )
        shared = [row["session"] for row in overlap.orderBy("session").limit(5).collect()]
        if shared:
            raise ValueError(
                f"{test_path}: {overlap.count()} test session ids also occur in {train_path} (e.g. {shared})"
            )
    else:
        logger.info("No test file given: only the local validation split will be built and evaluated")
        test_events = empty_events(spark)
    report = {"sources": raw_sources, "train": train_report, "test": test_report}
    metrics = mlflow_metrics({f"train.{k}": v for k, v in train_report.items()})
    metrics |= mlflow_metrics({f"test.{k}": v for k, v in test_report.items()})
    return events, test_events, report, metrics


def split_local_validation_spark(
    events: DataFrame, params: dict[str, Any]
) -> tuple[DataFrame, DataFrame, DataFrame, dict[str, Any], tuple[int, int]]:
    """The split on Spark; also returns the event table's first and last ts for the empty-test check."""
    result = split_events_spark(events, test_days=params["test_days"], seed=params["seed"])
    bounds = (0, 0)
    if result.counts["test_sessions"] == 0:
        row = events.agg(F.min("ts").alias("lo"), F.max("ts").alias("hi")).first()
        assert row is not None
        bounds = (int(row["lo"]), int(row["hi"]))
    return result.train, result.test_inputs, result.test_labels, result.stats(), bounds

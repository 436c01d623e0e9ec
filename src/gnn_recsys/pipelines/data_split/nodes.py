"""Split node: the official OTTO local-validation protocol on the train events."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import polars as pl

from gnn_recsys.data.split import split_events
from gnn_recsys.pipelines.engine import is_spark_frame, spark_native
from gnn_recsys.pipelines.mlflow_metrics import mlflow_metrics

logger = logging.getLogger(__name__)


@spark_native
def split_local_validation(
    events: pl.DataFrame, params: dict[str, Any]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, dict[str, float]]]:
    """Hold out the last ``test_days`` as truncated test sessions with next-event labels.

    A Spark event table (``--env spark``) is split on Spark into Spark tables, the same rows.
    """
    if is_spark_frame(events):
        from gnn_recsys.pipelines.spark_nodes import split_local_validation_spark  # noqa: PLC0415

        train, test_inputs, test_labels, stats, bounds = split_local_validation_spark(events, params)
    else:
        result = split_events(events, test_days=params["test_days"], seed=params["seed"])
        train, test_inputs, test_labels, stats = (
            result.train,
            result.test_inputs,
            result.test_labels,
            result.stats(),
        )
        bounds = (int(events["ts"].min()), int(events["ts"].max())) if events.height else (0, 0)  # type: ignore[arg-type]
    logger.info("Local validation split: %s", stats)
    if stats["test_sessions"] == 0:
        _no_test_sessions(bounds, params["test_days"], stats)
    return train, test_inputs, test_labels, mlflow_metrics(stats)


def _no_test_sessions(ts_bounds: tuple[int, int], test_days: int, stats: dict[str, Any]) -> None:
    """Stop (or, for ``test_days: 0``, warn): without test sessions every metric would be empty."""
    first, last = (datetime.fromtimestamp(ts / 1000, tz=UTC) for ts in ts_bounds)
    span = (last - first).total_seconds() / 86400
    where = (
        f"the data spans {span:.2f} days ({first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC); "
        f"{stats['test_sessions_full']} sessions start in the last {test_days} days, "
        f"{stats['train_sessions']} train sessions remain before them"
    )
    if test_days == 0:
        logger.warning("split.test_days=0: no local test sessions, so no local evaluation (%s)", where)
        return
    raise ValueError(
        f"split.test_days={test_days} leaves no local test sessions: {where}. Test sessions need at least "
        "two events on items seen in the train part; choose split.test_days shorter than the data's span, "
        'e.g. --params "split.test_days=1"'
    )

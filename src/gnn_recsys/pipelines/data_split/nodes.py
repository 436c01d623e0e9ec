"""Split node: the official OTTO local-validation protocol on the train events."""

from __future__ import annotations

import logging
from typing import Any

import polars as pl

from gnn_recsys.data.split import split_events
from gnn_recsys.pipelines.mlflow_metrics import mlflow_metrics

logger = logging.getLogger(__name__)


def split_local_validation(
    events: pl.DataFrame, params: dict[str, Any]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, dict[str, float]]]:
    """Hold out the last ``test_days`` as truncated test sessions with next-event labels."""
    result = split_events(events, test_days=params["test_days"], seed=params["seed"])
    stats = result.stats()
    logger.info("Local validation split: %s", stats)
    return result.train, result.test_inputs, result.test_labels, mlflow_metrics(stats)

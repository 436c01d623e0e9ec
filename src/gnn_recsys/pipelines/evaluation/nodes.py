"""Evaluation node: one evaluator for every model, so the numbers are comparable."""

from __future__ import annotations

import logging
from typing import Any

import polars as pl

from gnn_recsys.evaluation.metrics import evaluate, metrics_table
from gnn_recsys.pipelines.mlflow_metrics import mlflow_metrics

logger = logging.getLogger(__name__)


def evaluate_models(
    labels: pl.DataFrame, params: dict[str, Any], **candidates: pl.DataFrame
) -> tuple[dict[str, Any], dict[str, dict[str, float]], str]:
    """Score each model's candidates for the local test sessions against the held-out labels.

    Returns the JSON report, the flat MLflow metrics (types without labels are left out rather than
    logged as NaN) and a printable side-by-side table.
    """
    results = {
        model: evaluate(frame, labels, k=params["k"], ks=tuple(params["ks"]))
        for model, frame in candidates.items()
    }
    table = metrics_table(results)
    logger.info("Local validation metrics (official OTTO protocol), also in metrics_table:")
    print(table, flush=True)  # noqa: T201 - a log handler would re-wrap the table's columns
    flat = mlflow_metrics(
        {f"{model}.{name}": value for model, metrics in results.items() for name, value in metrics.items()}
    )
    return {"k": params["k"], "models": results}, flat, table

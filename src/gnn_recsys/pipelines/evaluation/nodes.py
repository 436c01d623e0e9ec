"""Evaluation node: one evaluator for every model, so the numbers are comparable."""

from __future__ import annotations

import logging
import math
from typing import Any

import mlflow
import polars as pl
from matplotlib.figure import Figure

from gnn_recsys.evaluation.analysis import (
    popularity_deciles,
    recall_at_k_curve,
    recall_by_session_length,
    recommendation_popularity,
)
from gnn_recsys.evaluation.metrics import evaluate, metrics_table
from gnn_recsys.evaluation.plots import (
    popularity_figure,
    recall_at_k_figure,
    recall_by_length_figure,
    training_curves_figure,
)
from gnn_recsys.pipelines.mlflow_metrics import mlflow_metrics

logger = logging.getLogger(__name__)


def evaluate_models(
    labels: pl.DataFrame, test_inputs: pl.DataFrame, params: dict[str, Any], **candidates: pl.DataFrame
) -> tuple[dict[str, Any], dict[str, dict[str, float]], str]:
    """Score each model's candidates for the local test sessions against the held-out labels.

    Returns the JSON report, the flat MLflow metrics (types without labels are left out rather than
    logged as NaN) and a printable side-by-side table.
    """
    results = {
        model: evaluate(frame, labels, k=params["k"], ks=tuple(params["ks"]), history=test_inputs)
        for model, frame in candidates.items()
    }
    table = metrics_table(results)
    logger.info("Local validation metrics (official OTTO protocol), also in metrics_table:")
    print(table, flush=True)  # noqa: T201 - a log handler would re-wrap the table's columns
    flat = mlflow_metrics(
        {f"{model}.{name}": value for model, metrics in results.items() for name, value in metrics.items()}
    )
    return {"k": params["k"], "models": results}, flat, table


def evaluation_plots(
    labels: pl.DataFrame,
    test_inputs: pl.DataFrame,
    train_events: pl.DataFrame,
    params: dict[str, Any],
    **candidates: pl.DataFrame,
) -> tuple[Figure, Figure, Figure]:
    """Recall@K for K = 1..``plot_max_k`` per type, recall@k by session length, and the share of
    recommendations by item-popularity decile, every model in each figure."""
    k, max_k = params["k"], params["plot_max_k"]
    curves, by_length, popularity = [], [], []
    deciles = popularity_deciles(train_events)
    for model, frame in candidates.items():
        tag = pl.lit(model).alias("model")
        curves.append(recall_at_k_curve(frame, labels, max_k=max_k).with_columns(tag))
        by_length.append(recall_by_session_length(frame, labels, test_inputs, k=k).with_columns(tag))
        popularity.append(recommendation_popularity(frame, deciles, k=k).with_columns(tag))
    # what the train events themselves look like: a recommender copying their popularity
    data_share = (
        train_events.select(pl.col("aid").cast(pl.Int32))
        .join(deciles, on="aid")
        .group_by("decile")
        .len()
        .sort("decile")
        .select(pl.col("decile").cast(pl.String), (pl.col("len") / pl.col("len").sum()).alias("share"))
        .with_columns(pl.lit("train events").alias("model"))
    )
    return (
        recall_at_k_figure(pl.concat(curves), cutoff=k),
        recall_by_length_figure(pl.concat(by_length), k=k),
        popularity_figure(pl.concat([*popularity, data_share]), k=k),
    )


def training_curves_plot(history: dict[str, Any]) -> tuple[Figure, dict[str, list[dict[str, float]]]]:
    """Training loss and validation metrics per epoch, from the training pipeline's history, and the
    per-epoch metrics of the epochs a resumed run took from its checkpoint (``epoch < start_epoch``):
    the training loop logged those in the interrupted run, so without them this run's curves would
    start in the middle."""
    resumed = [row for row in history.get("epochs", []) if row["epoch"] < history.get("start_epoch", 1)]
    curves: dict[str, list[dict[str, float]]] = {}
    for row in resumed:
        for name, metric in mlflow_metrics(row, step=int(row["epoch"])).items():
            if name != "epoch":
                curves.setdefault(name, []).append(metric)
    if resumed:
        logger.info("Logging the curves of %d epochs resumed from the checkpoint", len(resumed))
    return training_curves_figure(history), curves


def link_scores_to_logged_model(report: dict[str, Any], model: str = "dgsr") -> None:
    """Log ``model``'s scores on its MLflow logged model too, so the model's page shows them.

    The model is logged by the training pipeline before it is evaluated; this finds it in the active
    run (name ``<model>_model``) and attaches the evaluation's figures to it.
    """
    run = mlflow.active_run()
    scores = (report.get("models") or {}).get(model)
    if run is None or not scores:
        return
    found = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}' AND name = '{model}_model'",
        output_format="list",
    )
    values = {k: float(v) for k, v in scores.items() if isinstance(v, int | float) and not math.isnan(v)}
    for logged in found:
        mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in values.items()}, model_id=logged.model_id)
    logger.info("Linked %d %s scores to %d logged model(s)", len(values), model, len(found))

"""Ranking nodes: thin wrappers over ``gnn_recsys.ranking`` (the timeline is in docs/ranking.md)."""

from __future__ import annotations

import logging
from typing import Any

import lightgbm as lgb
import mlflow
import polars as pl
from matplotlib.figure import Figure

from gnn_recsys.pipelines.mlflow_metrics import mlflow_metrics
from gnn_recsys.ranking import (
    CandidateConfig,
    RankerConfig,
    attach_labels,
    build_features,
    candidate_ceiling,
    cross_fit_rerank,
    fusion_candidates,
    rerank,
    train_ranker,
)
from gnn_recsys.ranking.plots import feature_importance_figure, validation_curve_figure

logger = logging.getLogger(__name__)


def make_features(
    session_events: pl.DataFrame,
    train_events: pl.DataFrame,
    params: dict[str, Any],
    covisitation_neighbours: pl.DataFrame | None = None,
    **sources: pl.DataFrame,
) -> pl.DataFrame:
    """Candidates and features of the sessions in ``session_events``.

    ``train_events`` plus ``session_events`` are what the sources were fitted on: item popularity is
    counted there and nowhere else; ``covisitation_neighbours`` are the co-visitation matrices fitted
    there (``covis_*`` features).
    """
    config = CandidateConfig.from_dict(params)
    features = build_features(
        sources,
        session_events,
        pl.concat([train_events, session_events]),
        config,
        covisitation_neighbours=covisitation_neighbours,
    )
    per_list = features.group_by(["session", "type"]).len()["len"]
    logger.info(
        "ranking features: %d rows, %d columns, %.1f candidates per (session, type) list",
        features.height, features.width, per_list.mean() or 0.0,
    )  # fmt: skip
    return features


def label_features(features: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """The ranker's training table: features plus ``target`` and ``n_true`` from the sessions' labels."""
    return attach_labels(features, labels)


def _ranker_options(params: dict[str, Any]) -> dict[str, Any]:
    """``train_ranker`` / ``cross_fit_rerank`` keyword arguments from the ``ranking`` parameters."""
    candidates = CandidateConfig.from_dict(params["candidates"])
    return {
        "sources": list(candidates.source_k),
        "fusion_weights": candidates.fusion_weights,
        "fusion_offset": candidates.fusion_offset,
        "config": RankerConfig.from_dict(params["ranker"]),
    }


def fit_ranker(
    table: pl.DataFrame, params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, float]], Figure, Figure]:
    """Train the per-type ranker; returns the model, its report, MLflow metrics and two figures."""
    model, report = train_ranker(table, **_ranker_options(params))
    flat: dict[str, Any] = {}
    for type_name, entry in report.items():
        flat[f"{type_name}.lightgbm_chosen"] = float(entry["chosen"] == "lightgbm")
        flat[f"{type_name}.train_sessions_with_positive"] = entry["train_sessions_with_positive"]
        for contender, recall in (entry.get("valid_recall") or {}).items():
            flat[f"{type_name}.valid_recall_at_20.{contender}"] = recall
        if "best_iteration" in entry:
            flat[f"{type_name}.best_iteration"] = entry["best_iteration"]
    return (
        model,
        report,
        mlflow_metrics(flat),
        feature_importance_figure(report),
        validation_curve_figure(report),
    )


def cross_fit_reranker(
    table: pl.DataFrame, params: dict[str, Any]
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """The local test sessions reranked out of fold: each fold by a ranker trained on the others."""
    return cross_fit_rerank(table, **_ranker_options(params))


def rerank_candidates(model: dict[str, Any], features: pl.DataFrame, params: dict[str, Any]) -> pl.DataFrame:
    """The reranked typed candidates (top ``output_k`` per session and type)."""
    return rerank(model, features, k=params["output_k"])


def fuse_candidates(features: pl.DataFrame, params: dict[str, Any]) -> pl.DataFrame:
    """The untrained reciprocal-rank fusion, a model of its own and the ranker's floor."""
    return fusion_candidates(features, k=params["output_k"])


def ceiling_candidates(table: pl.DataFrame) -> pl.DataFrame:
    """Oracle order of the labelled candidates (labels first): the best recall any ranker can reach."""
    return candidate_ceiling(table)


def log_ranker_to_mlflow(model: dict[str, Any]) -> None:
    """Log each type's LightGBM model as an MLflow model (blend weights as parameters)."""
    if mlflow.active_run() is None:
        logger.info("No active MLflow run: the ranker is not logged to MLflow")
        return
    for type_name, scorer in model["types"].items():
        if scorer["kind"] == "lightgbm":
            mlflow.lightgbm.log_model(
                lgb.Booster(model_str=scorer["model"]),
                name=f"ranker_{type_name}",
                pip_requirements=[f"lightgbm=={lgb.__version__}", f"mlflow=={mlflow.__version__}"],
            )
        else:
            mlflow.log_params({f"ranker.{type_name}.{k}": v for k, v in scorer["weights"].items()})
        mlflow.set_tag(f"ranker.{type_name}.kind", scorer["kind"])

"""Graph construction nodes.

Two graphs share one item vocabulary: the *local* graph (local train sessions plus the observed
prefixes of the local test sessions) trains and validates DGSR; the *full* graph (the whole train
file plus the test file's sessions) serves the Kaggle test predictions. Nothing after a prediction
point is in either: local test sessions enter only with their truncated prefixes.
"""

from __future__ import annotations

import logging

import polars as pl

from gnn_recsys.graph.temporal_graph import TemporalGraph, build_temporal_graph
from gnn_recsys.pipelines.mlflow_metrics import mlflow_metrics

logger = logging.getLogger(__name__)


def build_item_vocabulary(events: pl.DataFrame, test_events: pl.DataFrame) -> pl.DataFrame:
    """``item_index -> aid`` over every aid of the train and test files (sorted by aid)."""
    aids = pl.concat([events.select("aid"), test_events.select("aid")]).unique().sort("aid")
    return aids.with_row_index("item_index").with_columns(pl.col("item_index").cast(pl.Int32))


def build_graph(
    train_events: pl.DataFrame, test_inputs: pl.DataFrame, item_vocabulary: pl.DataFrame
) -> tuple[TemporalGraph, dict[str, dict[str, float]]]:
    """The session-item graph of train events plus observed test prefixes, and its statistics."""
    graph = build_temporal_graph(
        pl.concat([train_events, test_inputs]), item_aids=item_vocabulary["aid"].to_numpy()
    )
    stats = graph.stats()
    logger.info("Temporal graph: %s", stats)
    return graph, mlflow_metrics(stats)

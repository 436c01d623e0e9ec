"""Ranking pipeline (the timeline is in docs/ranking.md).

Features for the local test sessions (labelled) and for the test file; the ranker *cross-fitted* on
the local test sessions (each fold's lists ranked by a model trained on the other folds: the local
reranker score) and trained once on all of them for the test file; the rank fusion and the candidate
ceiling as models of their own. The local test sessions' candidate sources never saw their labels
(they are fitted before the local cut), so no second training period is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kedro.pipeline import Node, Pipeline, node

from .nodes import (
    ceiling_candidates,
    cross_fit_reranker,
    fit_ranker,
    fuse_candidates,
    label_features,
    log_ranker_to_mlflow,
    make_features,
    rerank_candidates,
)

SOURCES = ("covisitation", "dgsr")


def _features_node(
    period: str, session_events: str, train_events: str, prefix: str, sources: Sequence[str]
) -> Node:
    inputs = {
        "session_events": session_events,
        "train_events": train_events,
        "params": "params:ranking.candidates",
    }
    inputs |= {source: f"{prefix}candidates_{source}" for source in sources}
    if "covisitation" in sources:  # the matrices behind the candidates: covis_* features
        inputs["covisitation_neighbours"] = f"{prefix}covisitation_neighbours"
    return node(
        make_features, inputs=inputs, outputs=f"ranker_{period}_features", name=f"ranker_{period}_features"
    )


def create_pipeline(sources: Sequence[str] = SOURCES, **kwargs: Any) -> Pipeline:
    return Pipeline(
        [
            _features_node("local", "local_test_inputs", "local_train_events", "", sources),
            _features_node("test", "test_events", "events", "test_", sources),
            node(
                label_features,
                inputs=["ranker_local_features", "local_test_labels"],
                outputs="ranker_training_table",
                name="ranker_training_table",
            ),
            node(
                fit_ranker,
                inputs=["ranker_training_table", "params:ranking"],
                outputs=[
                    "ranker_model",
                    "ranker_report",
                    "ranker_metrics",
                    "ranker_feature_importance_plot",
                    "ranker_validation_curve_plot",
                ],
                name="train_ranker",
            ),
            node(log_ranker_to_mlflow, inputs="ranker_model", outputs=None, name="log_ranker_to_mlflow"),
            node(
                cross_fit_reranker,
                inputs=["ranker_training_table", "params:ranking"],
                outputs=["candidates_reranker", "ranker_cross_fit_report"],
                name="reranker_local_candidates",
            ),
            node(
                rerank_candidates,
                inputs=["ranker_model", "ranker_test_features", "params:ranking.ranker"],
                outputs="test_candidates_reranker",
                name="reranker_test_candidates",
            ),
            node(
                fuse_candidates,
                inputs=["ranker_local_features", "params:ranking.ranker"],
                outputs="candidates_fusion",
                name="fusion_local_candidates",
            ),
            node(
                fuse_candidates,
                inputs=["ranker_test_features", "params:ranking.ranker"],
                outputs="test_candidates_fusion",
                name="fusion_test_candidates",
            ),
            node(
                ceiling_candidates,
                inputs="ranker_training_table",  # the local features with their labels, joined once
                outputs="candidates_candidate_ceiling",
                name="candidate_ceiling",
            ),
        ]
    )

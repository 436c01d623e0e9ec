"""Ranking pipelines.

``create_ranker_period_pipeline``: the ranker's own training period.  The local train part is split
again by the official protocol (the last ``ranker_period.split.test_days`` days become truncated
sessions with labels) and co-visitation and DGSR are fitted on what precedes that cut, by the very
nodes of the ``data_split``, ``baselines``, ``graph_construction`` and ``training`` pipelines, under
the ``ranker_period`` namespace (datasets ``ranker_period.*``, parameters ``ranker_period.*``).

``create_pipeline``: features for the ranker period (with labels), for the local test sessions and
for the test file; the ranker trained on the first and applied to the other two; the rank fusion and
the candidate ceiling as models of their own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import mlflow
from kedro.pipeline import Node, Pipeline, node

from gnn_recsys.pipelines import baselines, data_split, graph_construction, training

from .nodes import (
    ceiling_candidates,
    fit_ranker,
    fuse_candidates,
    label_features,
    log_ranker_to_mlflow,
    make_features,
    rerank_candidates,
)

RANKER_PERIOD = "ranker_period"
SOURCES = ("covisitation", "dgsr")


def _in_child_run(func: Callable[..., Any], run_name: str) -> Callable[..., Any]:
    """Run ``func`` inside a nested MLflow run, so that the ranker period's DGSR curves (logged by
    the training nodes under the same names) do not mix with the main model's in the parent run."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if mlflow.active_run() is None:
            return func(*args, **kwargs)
        with mlflow.start_run(run_name=run_name, nested=True):
            return func(*args, **kwargs)

    return wrapper


def create_ranker_period_pipeline(sources: Sequence[str] = SOURCES) -> Pipeline:
    """Split of the local train part and the sources fitted before its cut (``ranker_period.*``)."""
    parts = [
        Pipeline(
            data_split.create_pipeline(), inputs={"events": "local_train_events"}, namespace=RANKER_PERIOD
        )
    ]
    if "covisitation" in sources:
        parts.append(
            Pipeline(
                baselines.create_pipeline().only_nodes_with_outputs("candidates_covisitation"),
                namespace=RANKER_PERIOD,
            )
        )
    if "dgsr" in sources:
        parts.append(
            Pipeline(
                graph_construction.create_pipeline().only_nodes_with_outputs("local_graph"),
                inputs={"item_vocabulary"},
                namespace=RANKER_PERIOD,
            )
        )
        dgsr = training.create_pipeline().to_outputs("candidates_dgsr")
        dgsr = Pipeline(
            [
                n._copy(func=_in_child_run(n.func, f"{RANKER_PERIOD}.{n.name}")) if isinstance(n, Node) else n
                for n in dgsr.nodes
            ]
        )
        parts.append(Pipeline(dgsr, inputs={"item_vocabulary"}, namespace=RANKER_PERIOD))
    return Pipeline(parts)


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
    # The training rows are built inside the ranker_period namespace: every input they read is that
    # period's (local_test_inputs there means ranker_period.local_test_inputs, and so on).
    training_rows = Pipeline(
        [
            _features_node("train", "local_test_inputs", "local_train_events", "", sources),
            node(
                label_features,
                inputs=["ranker_train_features", "local_test_labels"],
                outputs="ranker_training_table",
                name="ranker_training_table",
            ),
        ],
        namespace=RANKER_PERIOD,
        outputs={"ranker_train_features", "ranker_training_table"},
        parameters={"ranking.candidates"},
    )
    return training_rows + Pipeline(
        [
            _features_node("local", "local_test_inputs", "local_train_events", "", sources),
            _features_node("test", "test_events", "events", "test_", sources),
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
                rerank_candidates,
                inputs=["ranker_model", "ranker_local_features", "params:ranking.ranker"],
                outputs="candidates_reranker",
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
                inputs=["ranker_local_features", "local_test_labels"],
                outputs="candidates_candidate_ceiling",
                name="candidate_ceiling",
            ),
        ]
    )

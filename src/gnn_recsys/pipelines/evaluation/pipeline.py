"""Evaluation pipeline for a given set of models (each one's ``candidates_<model>`` dataset).

Besides the metrics, figures for the MLflow run (``08_reporting/plots``): recall@K curves, recall by
session length, recommendations by item popularity and, when DGSR is among the models, its training
curves.
"""

from collections.abc import Sequence

from kedro.pipeline import Pipeline, node

from .nodes import evaluate_models, evaluation_plots, link_scores_to_logged_model, training_curves_plot


def create_pipeline(models: Sequence[str] = ("popularity", "covisitation"), **kwargs) -> Pipeline:
    candidates = {model: f"candidates_{model}" for model in models}
    nodes = [
        node(
            evaluate_models,
            inputs={
                "labels": "local_test_labels",
                "test_inputs": "local_test_inputs",
                "params": "params:evaluation",
            }
            | candidates,
            outputs=["metrics_report", "metrics", "metrics_table"],
            name="evaluate_models",
        ),
        node(
            evaluation_plots,
            inputs={
                "labels": "local_test_labels",
                "test_inputs": "local_test_inputs",
                "train_events": "local_train_events",
                "params": "params:evaluation",
            }
            | candidates,
            outputs=["recall_at_k_plot", "recall_by_session_length_plot", "recommendation_popularity_plot"],
            name="evaluation_plots",
        ),
    ]
    if "dgsr" in models:
        nodes.append(
            node(
                training_curves_plot,
                inputs="dgsr_training_history",
                outputs=["dgsr_training_curves_plot", "dgsr_resumed_epoch_metrics"],
                name="dgsr_training_curves_plot",
            ),
        )
        nodes.append(
            node(link_scores_to_logged_model, inputs="metrics_report", outputs=None, name="link_dgsr_scores")
        )
    return Pipeline(nodes)

"""Evaluation pipeline for a given set of models (each one's ``candidates_<model>`` dataset)."""

from collections.abc import Sequence

from kedro.pipeline import Pipeline, node

from .nodes import evaluate_models


def create_pipeline(models: Sequence[str] = ("popularity", "covisitation"), **kwargs) -> Pipeline:
    inputs = {"labels": "local_test_labels", "params": "params:evaluation"}
    inputs |= {model: f"candidates_{model}" for model in models}
    return Pipeline(
        [
            node(
                evaluate_models,
                inputs=inputs,
                outputs=["metrics_report", "metrics", "metrics_table"],
                name="evaluate_models",
            )
        ]
    )

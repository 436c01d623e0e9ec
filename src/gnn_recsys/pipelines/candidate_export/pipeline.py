"""Candidate export pipeline: ``submission_<model>.csv`` for every model given.

The candidate tables themselves (``candidates_<model>`` for the local test sessions, with labels for
a reranker, and ``test_candidates_<model>`` for the test file) are parquet datasets already.
"""

from collections.abc import Sequence

from kedro.pipeline import Pipeline, node

from .nodes import make_submission


def create_pipeline(models: Sequence[str] = ("popularity", "covisitation"), **kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                make_submission,
                inputs=[f"test_candidates_{model}", "params:export.submission_k"],
                outputs=f"submission_{model}",
                name=f"export_submission_{model}",
            )
            for model in models
        ]
    )

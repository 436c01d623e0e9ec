"""Training pipeline: samples -> DGSR -> candidates for the local and the test sessions.

The local candidates come from ``dgsr_model`` (trained on the local split). The test file's
candidates and the MLflow model come from ``dgsr_submission_model``, that model trained again on the
full data (``refit_dgsr``): it has seen the local test labels, so it never scores the local split.
"""

from kedro.pipeline import Pipeline, node

from .nodes import (
    log_dgsr_to_mlflow,
    make_dgsr_samples,
    make_dgsr_train_graph,
    recommend_dgsr,
    refit_dgsr_model,
    train_dgsr_model,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                make_dgsr_train_graph,
                inputs=["local_train_events", "local_test_inputs", "item_vocabulary", "params:dgsr.samples"],
                outputs=["dgsr_train_graph", "dgsr_val_targets"],
                name="make_dgsr_train_graph",
            ),
            # Reads the graph back through the catalog (memory-mapped): see make_dgsr_train_graph.
            node(
                make_dgsr_samples,
                inputs=["dgsr_train_graph", "local_test_inputs", "dgsr_val_targets", "params:dgsr.samples"],
                outputs=["dgsr_train_samples", "dgsr_val_samples"],
                name="make_dgsr_samples",
            ),
            node(
                train_dgsr_model,
                inputs=["dgsr_train_graph", "dgsr_train_samples", "dgsr_val_samples", "params:dgsr"],
                outputs=["dgsr_model", "dgsr_training_history"],
                name="train_dgsr",
            ),
            node(
                recommend_dgsr,
                inputs=["dgsr_model", "local_graph", "local_test_inputs", "params:dgsr"],
                outputs="candidates_dgsr",
                name="dgsr_local_candidates",
            ),
            node(
                refit_dgsr_model,
                inputs=["dgsr_model", "full_graph", "test_events", "params:dgsr"],
                outputs="dgsr_submission_model",
                name="refit_dgsr",
            ),
            node(
                recommend_dgsr,
                inputs=["dgsr_submission_model", "full_graph", "test_events", "params:dgsr"],
                outputs="test_candidates_dgsr",
                name="dgsr_test_candidates",
            ),
            node(
                log_dgsr_to_mlflow,
                inputs=["dgsr_submission_model", "full_graph", "params:dgsr.inference"],
                outputs=None,
                name="log_dgsr_to_mlflow",
            ),
        ]
    )

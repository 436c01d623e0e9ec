"""Split pipeline: ``events`` -> local train events, truncated test sessions and their labels."""

from kedro.pipeline import Pipeline, node

from .nodes import split_local_validation


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                split_local_validation,
                inputs=["events", "params:split"],
                outputs=["local_train_events", "local_test_inputs", "local_test_labels", "split_metrics"],
                name="split_local_validation",
            )
        ]
    )

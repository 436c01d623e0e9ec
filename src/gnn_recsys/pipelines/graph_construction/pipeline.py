"""Graph construction pipeline: ``local_graph`` (training, validation) and ``full_graph`` (test file)."""

from kedro.pipeline import Pipeline, node

from .nodes import build_graph, build_item_vocabulary


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                build_item_vocabulary,
                inputs=["events", "test_events"],
                outputs="item_vocabulary",
                name="build_item_vocabulary",
            ),
            node(
                build_graph,
                inputs=["local_train_events", "local_test_inputs", "item_vocabulary"],
                outputs=["local_graph", "local_graph_metrics"],
                name="build_local_graph",
            ),
            node(
                build_graph,
                inputs=["events", "test_events", "item_vocabulary"],
                outputs=["full_graph", "full_graph_metrics"],
                name="build_full_graph",
            ),
        ]
    )

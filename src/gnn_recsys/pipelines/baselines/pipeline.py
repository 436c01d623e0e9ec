"""Baselines pipeline: candidates of each baseline for the local test sessions (scored against the
held-out labels) and for the Kaggle test sessions (exported as a submission)."""

from kedro.pipeline import Pipeline, node

from .nodes import recommend_covisitation, recommend_popularity

BASELINES = {"popularity": recommend_popularity, "covisitation": recommend_covisitation}


def create_pipeline(**kwargs) -> Pipeline:
    nodes = []
    for model, recommend in BASELINES.items():
        nodes += [
            node(
                recommend,
                inputs=["local_train_events", "local_test_inputs", f"params:{model}"],
                outputs=f"candidates_{model}",
                name=f"{model}_local_candidates",
            ),
            node(
                recommend,
                inputs=["events", "test_events", f"params:{model}"],
                outputs=f"test_candidates_{model}",
                name=f"{model}_test_candidates",
            ),
        ]
    return Pipeline(nodes)

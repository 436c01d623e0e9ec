"""Baselines pipeline: candidates of each baseline for the local test sessions (scored against the
held-out labels) and for the Kaggle test sessions (exported as a submission).  Co-visitation also
writes its matrices (``covisitation_neighbours``, ``test_covisitation_neighbours``): the ranking
stage's co-visitation features read the very weights behind the candidates."""

from kedro.pipeline import Pipeline, node

from .nodes import recommend_covisitation, recommend_popularity, recommend_recent_items

BASELINES = {
    "popularity": recommend_popularity,
    "recent_items": recommend_recent_items,
    "covisitation": recommend_covisitation,
}
WITH_NEIGHBOURS = {"covisitation"}


def create_pipeline(**kwargs) -> Pipeline:
    nodes = []
    for model, recommend in BASELINES.items():
        # A model that returns its matrices too (co-visitation) writes them next to its candidates.
        extra = [f"{model}_neighbours"] if model in WITH_NEIGHBOURS else []
        nodes += [
            node(
                recommend,
                inputs=["local_train_events", "local_test_inputs", f"params:{model}"],
                outputs=[f"candidates_{model}", *extra] if extra else f"candidates_{model}",
                name=f"{model}_local_candidates",
            ),
            node(
                recommend,
                inputs=["events", "test_events", f"params:{model}"],
                outputs=[f"test_candidates_{model}", *[f"test_{name}" for name in extra]]
                if extra
                else f"test_candidates_{model}",
                name=f"{model}_test_candidates",
            ),
        ]
    return Pipeline(nodes)

"""Tuning pipeline: an Optuna study over DGSR's hyperparameters on the training pipeline's samples."""

from kedro.pipeline import Pipeline, node

from .nodes import tune_dgsr


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                tune_dgsr,
                inputs=[
                    "dgsr_train_graph",
                    "dgsr_train_samples",
                    "dgsr_val_samples",
                    "params:dgsr",
                    "params:tuning",
                ],
                outputs=["dgsr_best_params", "dgsr_tuning_trials"],
                name="tune_dgsr",
            ),
        ]
    )

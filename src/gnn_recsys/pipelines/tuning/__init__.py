"""An Optuna study over DGSR's hyperparameters, each trial a nested MLflow run."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]

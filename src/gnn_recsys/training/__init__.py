"""Fitting DGSR: configuration, optimisation step, early stopping, checkpoints, the fit loop."""

from gnn_recsys.training.checkpoint import CHECKPOINT_FILE
from gnn_recsys.training.config import FitConfig, TrainConfig
from gnn_recsys.training.fit import TrainResult, train_dgsr

__all__ = ["CHECKPOINT_FILE", "FitConfig", "TrainConfig", "TrainResult", "train_dgsr"]

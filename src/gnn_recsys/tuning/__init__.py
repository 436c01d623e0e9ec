"""Hyperparameter search for DGSR with Optuna: the search space, the objective, the best parameters."""

from gnn_recsys.tuning.space import Dimension, parse_search_space
from gnn_recsys.tuning.study import (
    DEFAULT_SEARCH_SPACE,
    NullTracker,
    StudyResult,
    TuningConfig,
    best_params_yaml,
    params_cli,
    run_study,
)

__all__ = [
    "DEFAULT_SEARCH_SPACE",
    "Dimension",
    "NullTracker",
    "StudyResult",
    "TuningConfig",
    "best_params_yaml",
    "params_cli",
    "parse_search_space",
    "run_study",
]

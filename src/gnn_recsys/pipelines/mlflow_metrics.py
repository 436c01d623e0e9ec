"""Shape of metrics for kedro-mlflow's ``MlflowMetricsHistoryDataset``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def mlflow_metrics(values: Mapping[str, object], step: int = 0) -> dict[str, dict[str, float]]:
    """``{name: number}`` -> ``{name: {"value": float, "step": step}}``.

    Only numbers are metrics (strings and ``None`` are left out); ``@`` is not allowed in MLflow metric
    names, so ``recall@20`` becomes ``recall_at_20``.
    """
    return {
        name.replace("@", "_at_"): {"value": float(value), "step": step}
        for name, value in values.items()
        if isinstance(value, int | float | np.number) and not isinstance(value, bool)
    }

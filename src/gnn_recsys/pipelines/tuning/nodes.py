"""Tuning node: the study of :mod:`gnn_recsys.tuning`, each trial a nested MLflow run.

kedro-mlflow opens the parent run before the pipeline starts; every trial opens a child run under it
with the trial's parameters, its per-epoch curves and its objective, and the parent gets the best
value and parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
import polars as pl

from gnn_recsys.graph.temporal_graph import TemporalGraph
from gnn_recsys.loader.samples import SampleSet
from gnn_recsys.pipelines.mlflow_metrics import mlflow_metrics
from gnn_recsys.tuning import NullTracker, TuningConfig, best_params_yaml, params_cli, run_study

logger = logging.getLogger(__name__)


class _MlflowTrialLog:
    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        logged = mlflow_metrics({f"dgsr.{k}": v for k, v in metrics.items()})
        mlflow.log_metrics({k: v["value"] for k, v in logged.items()}, step=epoch)

    def finish(self, outcome: dict[str, Any]) -> None:
        mlflow.set_tag("tuning.state", outcome["state"])
        if "reason" in outcome:
            mlflow.set_tag("tuning.reason", outcome["reason"])
        summary = {f"tuning.{k}": outcome[k] for k in ("objective", "epochs", "best_epoch", "seconds")}
        logged = mlflow_metrics(summary)
        mlflow.log_metrics({k: v["value"] for k, v in logged.items() if v["value"] == v["value"]})


class MlflowTrialTracker:
    """Each trial a child run of the active run: ``trial-<n>`` with the ``dgsr.*`` values it tried."""

    @contextmanager
    def trial(self, number: int, params: dict[str, Any]) -> Iterator[_MlflowTrialLog]:
        with mlflow.start_run(run_name=f"trial-{number:03d}", nested=True):
            mlflow.log_params({f"dgsr.{k}": v for k, v in params.items()} | {"tuning.trial": number})
            yield _MlflowTrialLog()


def tune_dgsr(
    graph: TemporalGraph,
    train_samples: pl.DataFrame,
    val_samples: pl.DataFrame,
    dgsr_params: dict[str, Any],
    tuning_params: dict[str, Any],
) -> tuple[str, pl.DataFrame]:
    """Run the study; the best parameters as a YAML parameters file and one row per trial."""
    config = TuningConfig.from_dict(tuning_params)
    active = mlflow.active_run() is not None
    result = run_study(
        graph,
        SampleSet.from_frame(train_samples),
        SampleSet.from_frame(val_samples),
        dgsr_params,
        config,
        tracker=MlflowTrialTracker() if active else NullTracker(),
    )
    best = result.best_dgsr_params()
    logger.info(
        'Best of %d trials: trial %d, %s %.5f; kedro run --params "%s"',
        len(result.trials),
        result.best_trial,
        result.metric,
        result.best_value,
        params_cli(best),
    )
    if active:
        states = [row["state"] for row in result.trials]
        mlflow.log_metrics(
            {
                "tuning.best_objective": result.best_value,
                "tuning.best_trial": result.best_trial,
                "tuning.trials_complete": states.count("complete"),
                "tuning.trials_pruned": states.count("pruned"),
            }
        )
        mlflow.log_params({f"tuning.best.dgsr.{k}": v for k, v in result.best_params.items()})
    trials = pl.DataFrame(result.trials, infer_schema_length=None)
    return best_params_yaml(result), trials

"""End-to-end ``KedroSession`` runs on tiny generated data with a temporary MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import polars as pl
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

TINY_DATA = {
    "synthetic": {"num_items": 300, "num_train_sessions": 1500, "num_test_sessions": 200, "seed": 3},
    "ingestion": {"progress": False},
}


def _run(project: Path, pipeline: str, params: dict) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_name=pipeline)


def _only_run(project: Path) -> mlflow.entities.Run:
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("gnn_recsys")
    assert experiment is not None, "kedro-mlflow did not create the project's experiment"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return runs[0]


@pytest.mark.slow
def test_covisitation_otto_end_to_end(kedro_project: Path) -> None:
    _run(kedro_project, "covisitation_otto", TINY_DATA)

    data = kedro_project / "data"
    report = json.loads((data / "08_reporting" / "metrics.json").read_text())
    models = report["models"]
    assert set(models) == {"popularity", "covisitation"}
    # The generator plants item-to-item transitions that only co-visitation can use.
    assert models["covisitation"]["score"] > models["popularity"]["score"]

    for model in ("popularity", "covisitation"):
        candidates = pl.read_parquet(data / "07_model_output" / f"candidates_{model}.parquet")
        assert candidates.columns == ["session", "rank", "aid", "score", "model"]
        assert candidates["model"].unique().to_list() == [model]
        submission = pl.read_csv(data / "07_model_output" / f"submission_{model}.csv")
        assert submission.columns == ["session_type", "labels"]
        test_sessions = pl.read_parquet(data / "02_intermediate" / "test_events.parquet")[
            "session"
        ].n_unique()
        assert submission.height == 3 * test_sessions

    run = _only_run(kedro_project)
    assert run.data.params["split.test_days"] == "7"
    assert run.data.params["synthetic.num_train_sessions"] == "1500"
    metrics = run.data.metrics
    assert metrics["metrics.covisitation.score"] == pytest.approx(models["covisitation"]["score"])
    assert "metrics.popularity.recall_at_20_orders" in metrics
    assert metrics["ingestion.train.ingest_sessions"] == 1500

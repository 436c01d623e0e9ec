"""Two runs with different parameters, compared the way the MLflow UI compares them."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

TINY = {
    "synthetic": {"num_items": 200, "num_train_sessions": 600, "num_test_sessions": 60, "seed": 5},
    "ingestion": {"progress": False},
}
PLOTS = {
    "plots/recall_at_k.png",
    "plots/recall_by_session_length.png",
    "plots/recommendation_popularity.png",
}


@pytest.mark.slow
def test_two_runs_line_up_in_the_mlflow_compare_view(kedro_project: Path) -> None:
    bootstrap_project(kedro_project)
    for top_k in (20, 50):
        params = TINY | {"covisitation": {"top_k": top_k}}
        # in-process, as a notebook would: the session must not leave its run open
        with KedroSession.create(project_path=kedro_project, runtime_params=params) as session:
            session.run(pipeline_names=["covisitation_otto"])
        assert mlflow.active_run() is None

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("gnn_recsys")
    first, second = client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])

    assert first.info.status == second.info.status == "FINISHED"
    assert set(first.data.metrics) == set(second.data.metrics)
    assert "metrics.covisitation.score" in first.data.metrics
    assert (first.data.params["covisitation.top_k"], second.data.params["covisitation.top_k"]) == ("20", "50")
    differing = {k for k in first.data.params if first.data.params[k] != second.data.params.get(k)}
    assert differing == {"covisitation.top_k"}

    # names and tags say what ran
    assert first.info.run_name != second.info.run_name
    assert first.info.run_name.startswith("covisitation_otto ")
    assert "covisitation.top_k=20" in first.info.run_name
    tags = second.data.tags
    assert tags["pipeline"] == "covisitation_otto" and tags["env"] == "local"
    assert tags["data_source"] == "synthetic(seed=5,sessions=600,items=200)"
    assert "covisitation.top_k=50" in tags["overrides"] and "covisitation.top_k=50" in tags["kedro_command"]
    assert tags["git_commit"]  # "unknown" here: the temporary project is not a git checkout

    for run in (first, second):
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert artifacts == PLOTS
        metrics_files = {a.path for a in client.list_artifacts(run.info.run_id, "metrics")}
        assert metrics_files == {"metrics/metrics.json", "metrics/metrics_table.txt"}
        png = Path(client.download_artifacts(run.info.run_id, "plots/recall_at_k.png"))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

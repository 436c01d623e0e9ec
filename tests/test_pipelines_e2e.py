"""End-to-end ``KedroSession`` runs on tiny generated data with a temporary MLflow store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import polars as pl
import pytest
import torch
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from gnn_recsys.export.candidates import CANDIDATE_SCHEMA, TYPED_CANDIDATE_SCHEMA

TINY_DATA = {
    "synthetic": {"num_items": 300, "num_train_sessions": 1500, "num_test_sessions": 200, "seed": 3},
    "ingestion": {"progress": False},
}


def _run(project: Path, pipeline: str, params: dict) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_names=[pipeline])
    # In-process there is no interpreter exit to close the run: the project's MlflowRunHook must have.
    assert mlflow.active_run() is None


def _only_run(project: Path) -> mlflow.entities.Run:
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("gnn_recsys")
    assert experiment is not None, "kedro-mlflow did not create the project's experiment"
    # nested runs (the ranker period's DGSR training) are the run's children, not runs of their own
    runs = [
        run
        for run in client.search_runs([experiment.experiment_id])
        if "mlflow.parentRunId" not in run.data.tags
    ]
    assert len(runs) == 1
    return runs[0]


@pytest.mark.slow
def test_covisitation_otto_end_to_end(kedro_project: Path) -> None:
    _run(kedro_project, "covisitation_otto", TINY_DATA)

    data = kedro_project / "data"
    report = json.loads((data / "08_reporting" / "metrics.json").read_text())
    models = report["models"]
    assert set(models) == {"popularity", "recent_items", "covisitation"}
    # The generator plants item-to-item transitions that only co-visitation can use.
    assert models["covisitation"]["score"] > models["popularity"]["score"]

    # popularity: one list per session; co-visitation (candidate_rerank): one per session and type
    columns = {
        "popularity": list(CANDIDATE_SCHEMA),
        "recent_items": list(CANDIDATE_SCHEMA),
        "covisitation": list(TYPED_CANDIDATE_SCHEMA),
    }
    for model, schema in columns.items():
        candidates = pl.read_parquet(data / "07_model_output" / f"candidates_{model}.parquet")
        assert candidates.columns == schema
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


TINY_DGSR = {
    **TINY_DATA,
    "dgsr": {
        "model": {"embedding_dim": 16, "item_max_length": 8, "user_max_length": 4},
        "loss": {"num_negatives": 128},
        "train": {"batch_size": 256, "max_epochs": 2, "warmup_steps": 0, "lr": 0.01, "progress": False},
        "loader": {"num_workers": 1},
        "inference": {"batch_size": 256},
    },
}


@pytest.mark.slow
def test_dgsr_otto_end_to_end(kedro_project: Path) -> None:
    _run(kedro_project, "dgsr_otto", TINY_DGSR)

    data = kedro_project / "data"
    models = json.loads((data / "08_reporting" / "metrics.json").read_text())["models"]
    assert set(models) == {
        "popularity",
        "recent_items",
        "covisitation",
        "dgsr",
        "fusion",
        "reranker",
        "candidate_ceiling",
    }
    # Two epochs of a 16-dim model on 1.5k sessions already learn far more than popularity.
    assert models["dgsr"]["score"] > models["popularity"]["score"]
    # The recent-items window of each list, chosen on the validation sessions and kept in the model;
    # where it is 20 wide, DGSR finds every repeat label the session's 20 most recent items find.
    history = json.loads((data / "08_reporting" / "dgsr_training_history.json").read_text())
    windows = history["keep_session_items"]["chosen"]
    assert set(windows) == {"clicks", "carts", "orders", "all"} and set(windows.values()) <= {0, 5, 10, 20}
    assert (
        torch.load(data / "06_models" / "dgsr_model.pt", weights_only=True)["keep_session_items"] == windows
    )
    for event_type in ("clicks", "carts", "orders"):
        repeat = f"hit@20_{event_type}_repeat"
        assert models["recent_items"][repeat] > 0.5
        if windows[event_type] == 20:
            assert models["dgsr"][repeat] >= models["recent_items"][repeat]

    candidates = pl.read_parquet(data / "07_model_output" / "candidates_dgsr.parquet")
    assert candidates.columns == ["session", "type", "rank", "aid", "score", "model"]
    assert sorted(candidates["type"].unique().to_list()) == [0, 1, 2]
    labels = pl.read_parquet(data / "03_primary" / "local_test_labels.parquet")
    assert set(labels["session"].unique()) <= set(candidates["session"].unique())
    submission = pl.read_csv(data / "07_model_output" / "submission_dgsr.csv")
    test_sessions = pl.read_parquet(data / "02_intermediate" / "test_events.parquet")["session"].n_unique()
    assert submission.height == 3 * test_sessions
    assert (data / "06_models" / "dgsr_model.pt").exists()
    history = json.loads((data / "08_reporting" / "dgsr_training_history.json").read_text())
    assert [epoch["epoch"] for epoch in history["epochs"]] == [1, 2]

    run = _only_run(kedro_project)
    client = mlflow.MlflowClient()
    assert run.data.params["dgsr.model.embedding_dim"] == "16"
    assert run.data.metrics["metrics.dgsr.score"] == pytest.approx(models["dgsr"]["score"])
    curve = client.get_metric_history(run.info.run_id, "dgsr.train_loss")
    assert [m.step for m in curve] == [1, 2]
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/dgsr_training_curves.png" in plots and "plots/recall_at_k.png" in plots
    assert "local_graph.num_events" in run.data.metrics
    # the trained model is a loadable MLflow model that recommends for new session events
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/dgsr_model")
    events = pl.read_parquet(data / "02_intermediate" / "test_events.parquet").head(30)
    events = events.to_pandas().astype("int64")  # a plain frame, as a user would send it
    predicted = model.predict(events, params={"k": 5, "event_type": "orders"})
    assert set(predicted["session"]) == set(events["session"])
    assert (predicted.groupby("session").size() == 5).all()
    # ... and its page in MLflow shows its scores
    logged = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}' AND name = 'dgsr_model'",
        output_format="list",
    )
    assert len(logged) == 1
    model_scores = {m.key: m.value for m in logged[0].metrics}
    assert model_scores["score"] == pytest.approx(models["dgsr"]["score"])

    # The ranking stage: cross-fitted local lists, a valid reranked table and submission, MLflow plots.
    reranked = pl.read_parquet(data / "07_model_output" / "candidates_reranker.parquet")
    folds = json.loads((data / "08_reporting" / "ranker_cross_fit_report.json").read_text())
    assert len(folds) == 3 and sum(fold["sessions"] for fold in folds) == reranked["session"].n_unique()
    assert reranked.columns == ["session", "type", "rank", "aid", "score", "model"]
    assert set(labels["session"].unique()) <= set(reranked["session"].unique())
    # no ranker can pass the oracle order of its own candidates
    for name in ("reranker", "fusion"):
        for kind in ("clicks", "carts", "orders"):
            metric = f"recall@20_{kind}"
            if models[name][metric] is not None:
                assert models[name][metric] <= models["candidate_ceiling"][metric] + 1e-12
    assert models["reranker"]["score"] > models["popularity"]["score"]
    submission = pl.read_csv(data / "07_model_output" / "submission_reranker.csv")
    assert submission.height == 3 * test_sessions
    assert (data / "07_model_output" / "ranker_training_table.parquet").exists()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "ranker")}
    assert artifacts == {"ranker/ranker_feature_importance.png", "ranker/ranker_validation_curve.png"}
    assert any(tag.startswith("ranker.") for tag in run.data.tags)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "dgsr.train_loss")]
    assert steps == list(range(1, len(steps) + 1))  # one DGSR curve in the run, no other training's mixed in

    # rerank_otto reruns the stage alone on the candidates left on disk
    before = (data / "07_model_output" / "candidates_reranker.parquet").stat().st_mtime_ns
    _run(kedro_project, "rerank_otto", TINY_DGSR)
    assert (data / "07_model_output" / "candidates_reranker.parquet").stat().st_mtime_ns > before
    rerun = json.loads((data / "08_reporting" / "metrics.json").read_text())["models"]
    assert rerun["reranker"]["score"] == pytest.approx(models["reranker"]["score"])


@pytest.mark.slow
def test_real_otto_file_from_the_command_line_without_a_test_file(
    kedro_project: Path, otto_sample: Path
) -> None:
    """``--params raw_train_path=...`` runs real OTTO JSONL through the same pipeline; no test file."""
    _run(
        kedro_project,
        "covisitation_otto",
        {"raw_train_path": str(otto_sample), "ingestion": {"progress": False}},
    )

    data = kedro_project / "data"
    events = pl.read_parquet(data / "02_intermediate" / "events.parquet")
    assert events.height == 862 and events["session"].n_unique() == 20
    assert pl.read_parquet(data / "02_intermediate" / "test_events.parquet").is_empty()
    # the official repository's own fact for this sample: 10 train and 8 test sessions
    assert pl.read_parquet(data / "03_primary" / "local_train_events.parquet")["session"].n_unique() == 10
    assert pl.read_parquet(data / "03_primary" / "local_test_inputs.parquet")["session"].n_unique() == 8
    report = json.loads((data / "08_reporting" / "metrics.json").read_text())
    assert set(report["models"]) == {"popularity", "recent_items", "covisitation"}
    submission = pl.read_csv(data / "07_model_output" / "submission_covisitation.csv")
    assert submission.columns == ["session_type", "labels"] and submission.is_empty()
    assert json.loads((data / "01_raw" / "raw_sources.json").read_text())["origin"] == "command_line"


@pytest.mark.slow
def test_env_otto_reads_the_kaggle_files_in_01_raw(kedro_project: Path, otto_sample: Path) -> None:
    otto_dir = kedro_project / "data" / "01_raw" / "otto"
    otto_dir.mkdir()
    shutil.copy(otto_sample, otto_dir / "train.jsonl")
    bootstrap_project(kedro_project)
    with KedroSession.create(project_path=kedro_project, env="otto", runtime_params=TINY_DATA) as session:
        session.run(pipeline_names=["ingestion"])
    assert mlflow.active_run() is None
    sources = json.loads((kedro_project / "data" / "01_raw" / "raw_sources.json").read_text())
    assert sources["origin"] == "otto" and sources["test_path"] is None
    assert pl.read_parquet(kedro_project / "data" / "02_intermediate" / "events.parquet").height == 862

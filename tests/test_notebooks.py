"""The notebooks in ``notebooks/`` run top to bottom on a tiny project and are committed without outputs.

One tiny DGSR run and one co-visitation run with a different parameter (both into a temporary MLflow
store) prepare the data; each notebook then runs in a fresh Jupyter kernel that finds the project and
the store through ``GNN_RECSYS_PROJECT`` and ``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import nbformat
import polars as pl
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from nbclient import NotebookClient

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))

TINY = {
    "synthetic": {"num_items": 300, "num_train_sessions": 1500, "num_test_sessions": 200, "seed": 3},
    "ingestion": {"progress": False},
    "dgsr": {
        "model": {"embedding_dim": 16, "item_max_length": 8, "user_max_length": 4},
        "loss": {"num_negatives": 128},
        "train": {"batch_size": 256, "max_epochs": 2, "warmup_steps": 0, "lr": 0.01, "progress": False},
        "loader": {"num_workers": 1},
        "inference": {"batch_size": 256},
    },
}


def test_notebooks_are_committed_without_outputs() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_data.ipynb",
        "02_graph_and_sampler.ipynb",
        "03_results.ipynb",
    ]
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for number, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                where = f"{path.name} cell {number}"
                assert cell.outputs == [], f"{where} has outputs: clear them before committing"
                assert cell.execution_count is None, f"{where} has an execution count"


def _run(project: Path, pipeline: str, params: dict) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_names=[pipeline])
    while mlflow.active_run() is not None:  # see test_pipelines_e2e._run
        mlflow.end_run()


@pytest.fixture(scope="module")
def results_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project copy after a tiny ``dgsr_otto`` run and a ``covisitation_otto`` run that differs in
    one parameter, with its own MLflow store."""
    project = tmp_path_factory.mktemp("notebooks") / "project"
    project.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
        mp.setenv("DO_NOT_TRACK", "1")
        mp.setenv("KEDRO_DISABLE_TELEMETRY", "1")
        _run(project, "dgsr_otto", TINY)
        _run(project, "covisitation_otto", {**TINY, "covisitation": {"top_k": 30}})
        yield project


def _execute(path: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the notebook in a fresh kernel; return the text it printed or displayed."""
    monkeypatch.setenv("GNN_RECSYS_PROJECT", str(project))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    monkeypatch.setenv("MPLBACKEND", "agg")
    # the kernel imports this checkout's package, as the test does
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    )
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(project)}}
    ).execute()
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") + output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


@pytest.mark.slow
def test_data_notebook(results_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _execute(PROJECT_ROOT / "notebooks" / "01_data.ipynb", results_project, monkeypatch)
    events = pl.read_parquet(results_project / "data" / "02_intermediate" / "events.parquet")
    assert f"train: {events.height:,} events, 1,500 sessions" in text


@pytest.mark.slow
def test_graph_and_sampler_notebook(results_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _execute(PROJECT_ROOT / "notebooks" / "02_graph_and_sampler.ipynb", results_project, monkeypatch)
    # the drawn sample really has later events that the subgraph left out (the notebook asserts the rest)
    left_out = next(line for line in text.splitlines() if line.startswith("left out:"))
    assert int(left_out.split()[2]) > 0


@pytest.mark.slow
def test_results_notebook(results_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _execute(PROJECT_ROOT / "notebooks" / "03_results.ipynb", results_project, monkeypatch)
    assert "2 finished runs" in text
    assert "covisitation.top_k" in text  # the one parameter the two runs differ in
    models = json.loads((results_project / "data" / "08_reporting" / "metrics.json").read_text())["models"]
    for model in models:
        assert model in text

"""kedro-viz: ``kedro viz build`` on the project, and the built ``dgsr_otto`` graph checked the way a
newcomer reads it: every dataset on its layer, every node inside a named stage, dataset statistics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import polars as pl
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from gnn_recsys.pipeline_registry import NAMESPACES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
]


def test_every_catalog_dataset_has_a_layer_and_a_description() -> None:
    catalog = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "catalog.yml").read_text())
    entries = {name: entry for name, entry in catalog.items() if not name.startswith("_")}
    assert entries
    for name, entry in entries.items():
        metadata = entry.get("metadata") or {}
        assert metadata.get("kedro-viz", {}).get("layer") in LAYERS, f"{name}: no known kedro-viz layer"
        description = metadata.get("description", "")
        assert 10 <= len(description) <= 160, f"{name}: needs a one-line metadata.description"


@pytest.mark.slow
def test_kedro_viz_build_shows_stages_layers_and_statistics(kedro_project: Path) -> None:
    bootstrap_project(kedro_project)
    params = {
        "synthetic": {"num_items": 200, "num_train_sessions": 600, "num_test_sessions": 50, "seed": 5},
        "ingestion": {"progress": False},
    }
    with KedroSession.create(project_path=kedro_project, runtime_params=params) as session:
        session.run(pipeline_names=["covisitation_otto"])
    while mlflow.active_run() is not None:
        mlflow.end_run()
    stats = json.loads((kedro_project / ".viz" / "stats.json").read_text())
    events = pl.read_parquet(kedro_project / "data" / "02_intermediate" / "events.parquet")
    assert stats["events"]["rows"] == events.height and stats["events"]["columns"] == 4

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"],
        cwd=kedro_project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    api = kedro_project / "build" / "api"
    graph = json.loads((api / "pipelines" / "dgsr_otto").read_text())

    by_type: dict[str, list[dict]] = {}
    for node in graph["nodes"]:
        by_type.setdefault(node["type"], []).append(node)
    assert graph["layers"] == LAYERS
    for dataset in by_type["data"]:
        assert dataset["layer"] in LAYERS, f"dataset {dataset['name']} has no layer"
    stages = set(NAMESPACES.values())
    modular = {n["name"] for n in by_type["modularPipeline"]}
    # top-level namespaces are the stages; the ranking stage nests the ranker period's training rows
    assert {name for name in modular if "." not in name} == stages
    assert all(name.split(".")[0] in stages for name in modular)
    for task in by_type["task"]:
        assert task["modular_pipelines"] and task["modular_pipelines"][0].split(".")[0] in stages, task[
            "full_name"
        ]
        assert task["full_name"].startswith(f"{task['modular_pipelines'][0]}.")
    # every stage holds at least one node, and the catalog's dataset names are unchanged
    assert {t["modular_pipelines"][0].split(".")[0] for t in by_type["task"]} == stages
    names = {d["name"] for d in by_type["data"]}
    assert {"events", "local_graph", "dgsr_model", "candidates_dgsr", "metrics_report"} <= names

    # the statistics of the run above reach the viz metadata panel
    events_node = next(d for d in by_type["data"] if d["name"] == "events")
    metadata = json.loads((api / "nodes" / events_node["id"]).read_text())
    assert metadata["stats"]["rows"] == events.height

"""Shared fixtures: a throw-away copy of the Kedro project with its own MLflow store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
OTTO_SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "otto_sample" / "train.jsonl"


@pytest.fixture
def otto_sample() -> Path:
    """The 20 real OTTO sessions from the official repository (skips when absent)."""
    if not OTTO_SAMPLE.exists():
        pytest.skip(f"real OTTO sample not found at {OTTO_SAMPLE}")
    return OTTO_SAMPLE


@pytest.fixture
def kedro_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The project's ``conf/`` and ``pyproject.toml`` in a temp folder, run from there.

    Data, the MLflow SQLite store and checkpoints all land under ``tmp_path``, so tests never touch the
    developer's ``data/`` or ``mlflow.db``.
    """
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()  # bootstrap_project wants one; the package is installed (editable)
    for layer in ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input",
                  "06_models", "07_model_output", "08_reporting"):  # fmt: skip
        (project / "data" / layer).mkdir(parents=True)
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    yield project

"""Ingestion nodes: choose the raw source, then stream its JSONL into typed event tables."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import polars as pl

from gnn_recsys.data.ingest import ingest_jsonl
from gnn_recsys.data.schema import empty_events
from gnn_recsys.data.synthetic import SyntheticConfig, write_synthetic_otto
from gnn_recsys.pipelines.mlflow_metrics import mlflow_metrics

logger = logging.getLogger(__name__)


def _synthetic_config(params: dict[str, Any]) -> SyntheticConfig:
    known = {f.name for f in fields(SyntheticConfig)}
    unknown = set(params) - known - {"dir"}
    if unknown:
        raise ValueError(f"parameters_ingestion.yml: unknown synthetic parameters {sorted(unknown)}")
    return SyntheticConfig(**{k: v for k, v in params.items() if k in known})


def resolve_raw_sources(
    raw_train_path: str | None,
    raw_test_path: str | None,
    data_source: str,
    otto_dir: str,
    synthetic: dict[str, Any],
) -> dict[str, Any]:
    """Decide which JSONL files feed the run, generating the synthetic default when needed.

    Precedence: paths given on the command line (``--params raw_train_path=...``), then the
    ``data_source`` of the environment (``otto`` reads the Kaggle files), then the seeded synthetic
    generator, whose files are cached next to the config that produced them.
    """
    if raw_train_path:
        train = Path(raw_train_path)
        test = Path(raw_test_path) if raw_test_path else None
        origin = "command_line"
    elif data_source == "otto":
        train, test = Path(otto_dir) / "train.jsonl", Path(otto_dir) / "test.jsonl"
        origin = "otto"
        if not test.exists():
            test = None
    elif data_source == "synthetic":
        config = _synthetic_config(synthetic)
        folder = Path(synthetic.get("dir", "data/01_raw/synthetic"))
        train, test = folder / "train.jsonl", folder / "test.jsonl"
        stamp = folder / "config.json"
        wanted = json.dumps(asdict(config), sort_keys=True)
        if train.exists() and test.exists() and stamp.exists() and stamp.read_text() == wanted:
            logger.info("Reusing synthetic OTTO data in %s (same config)", folder)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            counts = write_synthetic_otto(train, test, config)
            stamp.write_text(wanted)
            logger.info("Generated synthetic OTTO data in %s: %s", folder, counts)
        origin = "synthetic"
    else:
        raise ValueError(f"data_source must be 'synthetic' or 'otto', got {data_source!r}")

    if not train.exists():
        raise FileNotFoundError(f"Raw train file not found: {train} (data_source={origin})")
    if test is not None and not test.exists():
        raise FileNotFoundError(f"Raw test file not found: {test} (data_source={origin})")
    return {
        "origin": origin,
        "train_path": str(train),
        "test_path": str(test) if test is not None else None,
        "train_bytes": train.stat().st_size,
        "test_bytes": test.stat().st_size if test is not None else 0,
    }


def _ingest(path: str, min_events: int, params: dict[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    on_bad_line = params.get("on_bad_line", "raise")
    rejects = None
    if on_bad_line == "skip":
        rejects_dir = Path(params.get("rejects_dir", "data/02_intermediate/rejects"))
        rejects_dir.mkdir(parents=True, exist_ok=True)
        rejects = rejects_dir / f"{Path(path).stem}_rejects.jsonl"
    with tempfile.TemporaryDirectory(prefix="ingest_") as tmp:
        parquet = Path(tmp) / "events.parquet"
        report = ingest_jsonl(
            path,
            parquet,
            min_events=min_events,
            on_bad_line=on_bad_line,
            rejects_path=rejects,
            progress=params.get("progress", True),
        )
        events = pl.read_parquet(parquet)
    return events, report.as_dict()


def ingest_events(
    raw_sources: dict[str, Any], params: dict[str, Any]
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any], dict[str, dict[str, float]]]:
    """Ingest the train file (sessions need >= 2 events) and the optional test file (>= 1 event).

    Returns the two event tables, a JSON report and flat data-quality metrics for MLflow.
    """
    events, train_report = _ingest(raw_sources["train_path"], 2, params)
    if raw_sources.get("test_path"):
        test_events, test_report = _ingest(raw_sources["test_path"], 1, params)
    else:
        logger.info("No test file given: only the local validation split will be built and evaluated")
        test_events, test_report = empty_events(), {}
    overlap = events.select("session").unique().join(test_events.select("session").unique(), on="session")
    if overlap.height:
        raise ValueError(
            f"{raw_sources['test_path']}: {overlap.height} test session ids also occur in "
            f"{raw_sources['train_path']} (e.g. {overlap['session'].head(5).to_list()})"
        )
    report = {"sources": raw_sources, "train": train_report, "test": test_report}
    metrics = mlflow_metrics({f"train.{k}": v for k, v in train_report.items()})
    metrics |= mlflow_metrics({f"test.{k}": v for k, v in test_report.items()})
    return events, test_events, report, metrics

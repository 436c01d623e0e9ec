"""Ingestion nodes: choose the raw source, then turn it (OTTO JSONL or an event table) into typed
event tables."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import polars as pl

from gnn_recsys.data.events_table import TableFormat, ingest_event_tables
from gnn_recsys.data.ingest import ingest_jsonl
from gnn_recsys.data.schema import empty_events
from gnn_recsys.data.synthetic import SyntheticConfig, write_synthetic_otto
from gnn_recsys.pipelines.engine import spark_native
from gnn_recsys.pipelines.mlflow_metrics import mlflow_metrics

logger = logging.getLogger(__name__)

RAW_FORMATS = ("otto_jsonl", "events_table")


def _synthetic_config(params: dict[str, Any]) -> SyntheticConfig:
    known = {f.name for f in fields(SyntheticConfig)}
    unknown = set(params) - known - {"dir"}
    if unknown:
        raise ValueError(f"parameters_ingestion.yml: unknown synthetic parameters {sorted(unknown)}")
    return SyntheticConfig(**{k: v for k, v in params.items() if k in known})


def resolve_raw_sources(
    *,
    raw_train_path: str | None,
    raw_test_path: str | None,
    data_source: str,
    otto_dir: str,
    synthetic: dict[str, Any],
    raw_format: str = "otto_jsonl",
) -> dict[str, Any]:
    """Decide which raw files feed the run, generating the synthetic default when needed.

    Precedence: paths given on the command line (``--params raw_train_path=...``), then the
    ``data_source`` of the environment (``otto`` reads the Kaggle files), then the seeded synthetic
    generator, whose files are cached next to the config that produced them. A test file alone
    (``raw_test_path`` without ``raw_train_path``) is refused rather than silently ignored, and an
    event table (``raw_format=events_table``) needs ``raw_train_path``.
    """
    if raw_format not in RAW_FORMATS:
        raise ValueError(f"raw_format must be one of {RAW_FORMATS}, got {raw_format!r}")
    if raw_test_path and not raw_train_path:
        raise ValueError(
            f"raw_test_path={raw_test_path} was given without raw_train_path: a test file is only "
            "read together with its train file; give both (--params "
            '"raw_train_path=...,raw_test_path=..."), or neither'
        )
    if raw_format == "events_table" and not raw_train_path:
        raise ValueError("raw_format=events_table needs raw_train_path (and optionally raw_test_path)")
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
        "format": raw_format,
        "train_path": str(train),
        "test_path": str(test) if test is not None else None,
        "train_bytes": train.stat().st_size,
        "test_bytes": test.stat().st_size if test is not None else 0,
    }


def rejects_path(params: dict[str, Any], role: str, path: str) -> Path | None:
    """``<rejects_dir>/<role>_<file stem>_rejects.jsonl``: train and test never share one."""
    if params.get("on_bad_line", "raise") != "skip":
        return None
    rejects_dir = Path(params.get("rejects_dir", "data/02_intermediate/rejects"))
    rejects_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(Path(path).name.removesuffix(".gz")).stem
    return rejects_dir / f"{role}_{stem}_rejects.jsonl"


def _ingest_jsonl(
    path: str, role: str, min_events: int, params: dict[str, Any]
) -> tuple[pl.DataFrame, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="ingest_") as tmp:
        parquet = Path(tmp) / "events.parquet"
        report = ingest_jsonl(
            path,
            parquet,
            min_events=min_events,
            on_bad_line=params.get("on_bad_line", "raise"),
            rejects_path=rejects_path(params, role, path),
            max_bad_share=params.get("max_bad_share", 1.0),
            progress=params.get("progress", True),
        )
        events = pl.read_parquet(parquet)
    return events, report.as_dict()


def _no_id_map(key: str) -> pl.DataFrame:
    return pl.DataFrame(schema={key: pl.Int32, "source_id": pl.Int64})


def _require_events(events: pl.DataFrame, path: str, role: str, report: dict[str, Any]) -> None:
    """An empty file is a mistake, not a dataset: stop here, naming it, not later in the split."""
    if events.height:
        return
    hint = (
        "nothing to split or train on"
        if role == "train"
        else "leave raw_test_path unset to run without a test file"
    )
    raise ValueError(
        f"{path}: the {role} file holds no events ({report.get('ingest_bytes', 0):.0f} bytes, "
        f"{report.get('ingest_lines', 0):.0f} lines/rows): {hint}"
    )


@spark_native
def ingest_events(
    raw_sources: dict[str, Any],
    params: dict[str, Any],
    *,
    columns: dict[str, str | None] | None = None,
    ts_unit: str = "ms",
    ts_format: str | None = None,
    event_types: dict[str, str] | None = None,
    separator: str | None = None,
    id_codes: str = "auto",
) -> tuple[
    pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, Any], dict[str, dict[str, float]]
]:
    """Ingest the train file (sessions need >= 2 events) and the optional test file (>= 1 event).

    OTTO JSONL or, with ``raw_sources["format"] == "events_table"``, a CSV/TSV/parquet event table
    read with the column mapping and options (see :class:`TableFormat`). ``params["engine"] ==
    "spark"`` (the ``spark`` environment) reads OTTO JSONL into Spark event tables instead. Returns the two event tables,
    the session and aid id maps (empty unless an event table's ids had to be coded), a JSON report
    and flat data-quality metrics for MLflow.
    """
    train_path, test_path = raw_sources["train_path"], raw_sources.get("test_path")
    session_map, aid_map = _no_id_map("session"), _no_id_map("aid")
    engine = params.get("engine", "polars")
    if engine == "spark":  # --env spark: Spark event tables (gnn_recsys.spark)
        from gnn_recsys.pipelines.spark_nodes import ingest_events_spark  # noqa: PLC0415 (optional)

        spark_events, spark_test, spark_report, spark_metrics = ingest_events_spark(raw_sources, params)
        return spark_events, spark_test, session_map, aid_map, spark_report, spark_metrics  # type: ignore[return-value]
    if engine != "polars":
        raise ValueError(f"ingestion.engine must be 'polars' or 'spark', got {engine!r}")
    test_report: dict[str, Any] = {}
    if raw_sources.get("format", "otto_jsonl") == "events_table":
        fmt = TableFormat.from_params(
            columns,
            ts_unit=ts_unit,
            ts_format=ts_format,
            event_types=event_types,
            separator=separator,
            id_codes=id_codes,
        )
        tables = ingest_event_tables(
            train_path,
            test_path,
            fmt,
            on_bad_line=params.get("on_bad_line", "raise"),
            train_rejects_path=rejects_path(params, "train", train_path),
            test_rejects_path=rejects_path(params, "test", test_path) if test_path else None,
            max_bad_share=params.get("max_bad_share", 1.0),
        )
        events, test_events = tables.train, tables.test
        session_map, aid_map = tables.session_id_map, tables.aid_id_map
        train_report = tables.train_report.as_dict()
        if tables.test_report is not None:
            test_report = tables.test_report.as_dict()
    else:
        events, train_report = _ingest_jsonl(train_path, "train", 2, params)
        if test_path:
            test_events, test_report = _ingest_jsonl(test_path, "test", 1, params)
    _require_events(events, train_path, "train", train_report)
    if test_path:
        _require_events(test_events, test_path, "test", test_report)
    else:
        logger.info("No test file given: only the local validation split will be built and evaluated")
        test_events = empty_events()
    overlap = events.select("session").unique().join(test_events.select("session").unique(), on="session")
    if overlap.height:
        raise ValueError(
            f"{test_path}: {overlap.height} test session ids also occur in "
            f"{train_path} (e.g. {overlap['session'].head(5).to_list()})"
        )
    report = {"sources": raw_sources, "train": train_report, "test": test_report}
    metrics = mlflow_metrics({f"train.{k}": v for k, v in train_report.items()})
    metrics |= mlflow_metrics({f"test.{k}": v for k, v in test_report.items()})
    return events, test_events, session_map, aid_map, report, metrics

"""The ingestion nodes (source resolution, empty files, rejects names, the skip floor) and end-to-end
``KedroSession`` runs on a generated event table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import orjson
import polars as pl
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from gnn_recsys.data.ingest import read_events
from gnn_recsys.data.synthetic import SyntheticConfig, events_to_otto_jsonl, synthetic_events
from gnn_recsys.data.validation import TooManyBadLinesError, check_event_table
from gnn_recsys.pipelines.ingestion.nodes import ingest_events, resolve_raw_sources

T0 = 1_659_304_800_025
GOOD = [
    '{"session":1,"events":[{"aid":10,"ts":1659304800025,"type":"clicks"},{"aid":11,"ts":1659304800026,"type":"carts"}]}',
    '{"session":2,"events":[{"aid":12,"ts":1659304800027,"type":"clicks"},{"aid":13,"ts":1659304800028,"type":"clicks"}]}',
]
TEST = ['{"session":3,"events":[{"aid":10,"ts":1659304900000,"type":"clicks"}]}']
SKIP: dict[str, Any] = {"on_bad_line": "skip", "progress": False}


def _sources(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "raw_train_path": None,
        "raw_test_path": None,
        "data_source": "synthetic",
        "otto_dir": "unused",
        "synthetic": {},
        "raw_format": "otto_jsonl",
    }
    return resolve_raw_sources(**(args | kwargs))


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_a_test_file_alone_is_refused(tmp_path: Path) -> None:
    test = _write(tmp_path / "test.jsonl", TEST)
    with pytest.raises(ValueError, match=r"raw_test_path=.*test\.jsonl was given without raw_train_path"):
        _sources(raw_test_path=str(test))
    with pytest.raises(ValueError, match="raw_format=events_table needs raw_train_path"):
        _sources(raw_format="events_table")
    with pytest.raises(ValueError, match="raw_format must be one of"):
        _sources(raw_format="csv")
    train = _write(tmp_path / "train.jsonl", GOOD)
    sources = _sources(raw_train_path=str(train), raw_test_path=str(test))
    assert (sources["train_path"], sources["test_path"], sources["format"]) == (
        str(train),
        str(test),
        "otto_jsonl",
    )


@pytest.mark.parametrize("role", ["train", "test"])
def test_an_empty_file_stops_the_run_naming_it(tmp_path: Path, role: str) -> None:
    train = _write(tmp_path / "train.jsonl", GOOD if role == "test" else [])
    test = _write(tmp_path / "test.jsonl", [] if role == "test" else TEST)
    sources = _sources(raw_train_path=str(train), raw_test_path=str(test))
    empty = test if role == "test" else train
    with pytest.raises(ValueError, match=rf"{empty}: the {role} file holds no events \(0 bytes"):
        ingest_events(sources, {"progress": False})


def test_rejects_of_train_and_test_files_of_the_same_name_do_not_collide(tmp_path: Path) -> None:
    bad = '{"session":9,"events":[]}'
    train = _write(tmp_path / "a" / "data.jsonl", [*GOOD, bad])
    test = _write(tmp_path / "b" / "data.jsonl", [*TEST, bad])
    params = SKIP | {"rejects_dir": str(tmp_path / "rejects"), "max_bad_share": 0.5}
    events, test_events, *_ = ingest_events(
        _sources(raw_train_path=str(train), raw_test_path=str(test)), params
    )
    assert (events.height, test_events.height) == (4, 1)
    for role, path in (("train", train), ("test", test)):
        records = [
            orjson.loads(line)
            for line in (tmp_path / "rejects" / f"{role}_data_rejects.jsonl").read_bytes().splitlines()
        ]
        assert [(r["line"], r["reason"]) for r in records] == [
            (3 if role == "train" else 2, "too_few_events")
        ]
        assert records[0]["message"].startswith(str(path))


def test_an_unreadable_test_file_stops_a_skipping_run(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.jsonl", GOOD)
    test = tmp_path / "test.jsonl"
    test.write_bytes(bytes(range(256)) * 8)  # binary: not one line is JSON
    params = SKIP | {"rejects_dir": str(tmp_path / "rejects"), "max_bad_share": 0.05}
    with pytest.raises(TooManyBadLinesError, match=rf"{test}: all \d+ lines were rejected"):
        ingest_events(_sources(raw_train_path=str(train), raw_test_path=str(test)), params)


def test_events_table_through_the_node(tmp_path: Path) -> None:
    path = tmp_path / "clicks.tsv"
    path.write_text(f"SessionId\tItemId\tTime\nu1\t5\t{T0 / 1000}\nu1\t6\t{T0 / 1000 + 1}\n")
    sources = _sources(raw_train_path=str(path), raw_format="events_table")
    events, test_events, session_map, aid_map, report, metrics = ingest_events(
        sources,
        {"progress": False},
        columns={"session": "SessionId", "aid": "ItemId", "ts": "Time", "type": "type"},
        ts_unit="s",
        event_types={"clicks": "clicks"},
    )
    assert events.to_dict(as_series=False) == {
        "session": [0, 0],
        "aid": [5, 6],
        "ts": [T0, T0 + 1000],
        "type": [0, 0],
    }
    assert test_events.is_empty()
    assert session_map.to_dict(as_series=False) == {"session": [0], "source_id": ["u1"]}
    assert aid_map.is_empty()
    assert report["train"]["ingest_events"] == 2.0
    assert metrics["train.ingest_events_clicks"]["value"] == 2.0


# ------------------------------------------------------------------------------------ end to end


def _run(project: Path, pipeline: str, params: dict[str, Any]) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_names=[pipeline])
    while mlflow.active_run() is not None:  # see tests/test_pipelines_e2e.py
        mlflow.end_run()


def _write_table(events: pl.DataFrame, path: Path, session_prefix: str = "") -> None:
    """A YOOCHOOSE-like TSV: own column names, time in fractional seconds, own type names."""
    names = {0: "view", 1: "addtocart", 2: "transaction"}
    session = pl.col("session").cast(pl.String)
    table = events.select(
        (pl.lit(session_prefix) + session if session_prefix else pl.col("session")).alias("SessionId"),
        pl.col("aid").alias("ItemId"),
        (pl.col("ts") / 1000).alias("Time"),
        pl.col("type").replace_strict(names, return_dtype=pl.String).alias("EventType"),
    )
    # an event log in time order, sessions interleaved (stable: ties keep their order)
    table.sort("Time", maintain_order=True).write_csv(path, separator="\t")


def _by_session(events: pl.DataFrame) -> pl.DataFrame:
    """Sessions in id order, each session's events as they are (the order of sessions may differ)."""
    return events.sort("session", maintain_order=True)


TABLE_PARAMS = {
    "raw_format": "events_table",
    "columns": {"session": "SessionId", "aid": "ItemId", "ts": "Time", "type": "EventType"},
    "ts_unit": "s",
    "event_types": {"view": "clicks", "addtocart": "carts", "transaction": "orders"},
    "ingestion": {"progress": False},
}


@pytest.mark.slow
def test_covisitation_otto_on_a_tsv_event_table(kedro_project: Path) -> None:
    config = SyntheticConfig(num_items=300, num_train_sessions=1500, num_test_sessions=200, seed=3)
    train, test = synthetic_events(config, "train"), synthetic_events(config, "test")
    raw = kedro_project / "data" / "01_raw"
    _write_table(train, raw / "train.tsv")
    _write_table(test, raw / "test.tsv")
    events_to_otto_jsonl(train, raw / "train.jsonl")

    _run(
        kedro_project,
        "covisitation_otto",
        TABLE_PARAMS | {"raw_train_path": str(raw / "train.tsv"), "raw_test_path": str(raw / "test.tsv")},
    )

    data = kedro_project / "data"
    events = pl.read_parquet(data / "02_intermediate" / "events.parquet")
    check_event_table(events)
    assert _by_session(events).equals(_by_session(train))
    assert _by_session(events).equals(_by_session(read_events(raw / "train.jsonl")))  # same as JSONL
    assert _by_session(pl.read_parquet(data / "02_intermediate" / "test_events.parquet")).equals(
        _by_session(test)
    )
    assert pl.read_parquet(data / "02_intermediate" / "aid_id_map.parquet").is_empty()
    report = json.loads((data / "08_reporting" / "ingestion_report.json").read_text())
    assert report["sources"]["format"] == "events_table"
    assert report["train"]["ingest_repair_reordered_events"] > 0
    models = json.loads((data / "08_reporting" / "metrics.json").read_text())["models"]
    assert models["covisitation"]["score"] > models["popularity"]["score"]
    submission = pl.read_csv(data / "07_model_output" / "submission_covisitation.csv")
    assert submission.height == 3 * test["session"].n_unique()
    run = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name("gnn_recsys").experiment_id])[0]
    assert run.data.metrics["ingestion.train.ingest_events"] == train.height
    assert run.data.params["raw_format"] == "events_table"


@pytest.mark.slow
def test_text_session_ids_get_codes_and_a_map(kedro_project: Path) -> None:
    config = SyntheticConfig(num_items=100, num_train_sessions=60, num_test_sessions=10, seed=5)
    train = synthetic_events(config, "train")
    path = kedro_project / "data" / "01_raw" / "train.tsv"
    _write_table(train, path, session_prefix="visitor-")

    _run(kedro_project, "ingestion", TABLE_PARAMS | {"raw_train_path": str(path)})

    data = kedro_project / "data" / "02_intermediate"
    events = pl.read_parquet(data / "events.parquet")
    session_map = pl.read_parquet(data / "session_id_map.parquet")
    assert session_map.height == train["session"].n_unique()
    back = events.join(session_map, on="session", how="left")
    expected = train.with_columns(("visitor-" + pl.col("session").cast(pl.String)).alias("source_id"))
    # the same events, sessions in first-appearance order of the shuffled file
    assert (
        back.sort("source_id", "ts", "aid", "type")
        .select("source_id", "aid", "ts", "type")
        .equals(expected.sort("source_id", "ts", "aid", "type").select("source_id", "aid", "ts", "type"))
    )
    check_event_table(events)

"""Ingestion pipeline: raw OTTO JSONL or an event table -> ``events`` and ``test_events``
(02_intermediate), plus the id maps of an event table whose ids had to be coded."""

from kedro.pipeline import Pipeline, node

from .nodes import ingest_events, resolve_raw_sources


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                resolve_raw_sources,
                inputs={
                    "raw_train_path": "params:raw_train_path",
                    "raw_test_path": "params:raw_test_path",
                    "data_source": "params:data_source",
                    "otto_dir": "params:otto_dir",
                    "synthetic": "params:synthetic",
                    "raw_format": "params:raw_format",
                },
                outputs="raw_sources",
                name="resolve_raw_sources",
            ),
            node(
                ingest_events,
                inputs={
                    "raw_sources": "raw_sources",
                    "params": "params:ingestion",
                    "columns": "params:columns",
                    "ts_unit": "params:ts_unit",
                    "ts_format": "params:ts_format",
                    "event_types": "params:event_types",
                    "separator": "params:separator",
                    "id_codes": "params:id_codes",
                },
                outputs=[
                    "events",
                    "test_events",
                    "session_id_map",
                    "aid_id_map",
                    "ingestion_report",
                    "ingestion_metrics",
                ],
                name="ingest_events",
            ),
        ]
    )

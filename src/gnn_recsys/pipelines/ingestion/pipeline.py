"""Ingestion pipeline: raw JSONL -> ``events`` and ``test_events`` (02_intermediate)."""

from kedro.pipeline import Pipeline, node

from .nodes import ingest_events, resolve_raw_sources


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                resolve_raw_sources,
                inputs=[
                    "params:raw_train_path",
                    "params:raw_test_path",
                    "params:data_source",
                    "params:otto_dir",
                    "params:synthetic",
                ],
                outputs="raw_sources",
                name="resolve_raw_sources",
            ),
            node(
                ingest_events,
                inputs=["raw_sources", "params:ingestion"],
                outputs=["events", "test_events", "ingestion_report", "ingestion_metrics"],
                name="ingest_events",
            ),
        ]
    )

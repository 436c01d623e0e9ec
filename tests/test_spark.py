"""The Spark preprocessing path produces the default path's tables (pyspark in local mode).

Marked ``spark``: needs pyspark and Java 17+ (skipped without them; ``-m "not spark"`` leaves it out).
One SparkSession serves the module and one ``kedro run --env spark`` of ingestion and split on a few
hundred generated sessions feeds the comparisons, so most of the time goes to starting the JVM.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java (apt-get install openjdk-17-jre-headless)", allow_module_level=True)

from kedro.framework.session import KedroSession  # noqa: E402
from kedro.framework.startup import bootstrap_project  # noqa: E402
from kedro.pipeline import node  # noqa: E402

from gnn_recsys.baselines.covisitation import CovisitationConfig, CovisitationModel  # noqa: E402
from gnn_recsys.data.ingest import read_events  # noqa: E402
from gnn_recsys.data.schema import EVENT_SCHEMA  # noqa: E402
from gnn_recsys.data.split import split_events  # noqa: E402
from gnn_recsys.data.validation import BadInputError  # noqa: E402
from gnn_recsys.pipelines.data_split.nodes import split_local_validation  # noqa: E402
from gnn_recsys.spark.covisitation import pair_weights, top_neighbours  # noqa: E402
from gnn_recsys.spark.events import from_polars, read_otto_jsonl, to_polars  # noqa: E402
from gnn_recsys.spark.hooks import SparkHooks  # noqa: E402
from gnn_recsys.spark.session import spark_session  # noqa: E402

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark():
    session = spark_session({"spark.master": "local[2]", "spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()


def _spark_table(folder: Path) -> pl.DataFrame:
    """A Spark parquet dataset read with polars, in the default path's row order and columns."""
    table = pl.read_parquet(folder / "*.parquet")
    if "pos" in table.columns:
        return table.sort(["session", "pos"]).drop("pos")
    return table.sort(table.columns)


def _ranked(neighbours: pl.DataFrame) -> pl.DataFrame:
    return neighbours.sort(["aid", "weight", "neighbour"], descending=[False, True, False]).with_columns(
        pl.int_range(pl.len()).over("aid").alias("rank")
    )


def test_env_spark_writes_the_default_tables_and_counts_the_same_pairs(spark, kedro_project: Path) -> None:
    params = {
        "synthetic": {"num_items": 200, "num_train_sessions": 400, "num_test_sessions": 60, "seed": 5},
        "ingestion": {"progress": False},
        "split": {"seed": 11},
    }
    bootstrap_project(kedro_project)
    with KedroSession.create(project_path=kedro_project, env="spark", runtime_params=params) as session:
        session.run(pipeline_names=["ingestion", "data_split"])

    # ingestion and split: the default path's tables, row for row
    raw = kedro_project / "data" / "01_raw" / "synthetic"
    events = read_events(raw / "train.jsonl")
    expected = split_events(events, test_days=7, seed=11)
    assert expected.counts["test_sessions"] > 5
    intermediate, primary = (
        kedro_project / "data" / layer / "spark" for layer in ("02_intermediate", "03_primary")
    )
    assert_frame_equal(_spark_table(intermediate / "events"), events)
    assert_frame_equal(
        _spark_table(intermediate / "test_events"), read_events(raw / "test.jsonl", min_events=1)
    )
    assert_frame_equal(_spark_table(primary / "local_train_events"), expected.train)
    assert_frame_equal(_spark_table(primary / "local_test_inputs"), expected.test_inputs)
    assert_frame_equal(_spark_table(primary / "local_test_labels"), expected.test_labels)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("gnn_recsys")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert {key: run.data.metrics[f"split.{key}"] for key in expected.stats()} == expected.stats()
    assert run.data.metrics["ingestion.train.ingest_sessions"] == 400

    # co-visitation pairs of what the baseline fits on (train + observed test prefixes), from the
    # Spark tables just written, against the fitted model's table with every pair kept
    fitted_on = spark.read.parquet(str(primary / "local_train_events")).unionByName(
        spark.read.parquet(str(primary / "local_test_inputs"))
    )
    config = CovisitationConfig(max_events_per_session=12, time_window_ms=6 * 3_600_000, top_neighbours=10**6)
    pairs = pair_weights(fitted_on, config).cache()
    fitted = pl.concat([expected.train, expected.test_inputs])
    everything = CovisitationModel.fit(fitted, config).neighbours
    spark_pairs = to_polars(pairs)
    assert spark_pairs.height == everything.height > 500
    joined = everything.join(spark_pairs, on=["aid", "neighbour"], how="left", suffix="_spark")
    assert joined["weight_spark"].null_count() == 0
    # the same fixed-point sum over sessions on both sides: equal to the last bit
    assert (joined["weight_spark"].cast(pl.Float32) == joined["weight"]).all()

    # each aid's top neighbours: the same table, ties broken alike (smaller neighbour first)
    top = 3
    default_top = CovisitationModel.fit(
        fitted, CovisitationConfig(**{**config.__dict__, "top_neighbours": top})
    )
    spark_top = to_polars(top_neighbours(pairs, top))
    assert spark_top.height == default_top.neighbours.height > 100
    assert_frame_equal(_ranked(spark_top), _ranked(default_top.neighbours))


def test_a_bad_line_is_named_by_file_line_and_field(spark, tmp_path: Path) -> None:
    good = '{"session":%d,"events":[{"aid":1,"ts":1659304800000,"type":"clicks"},{"aid":2,"ts":1659304801000,"type":"%s"}]}'
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(good % (i, "carts" if i != 3 else "cart") for i in range(5)) + "\n")
    with pytest.raises(BadInputError) as error:
        read_otto_jsonl(spark, bad)
    assert error.value.line == 4 and error.value.field == "events[1].type"


def test_hook_hands_spark_tables_to_polars_nodes_only(spark) -> None:
    events = pl.DataFrame(
        {"session": [1, 1, 2], "aid": [7, 8, 5], "ts": [2, 2, 3], "type": [1, 0, 0]},
        schema=dict(EVENT_SCHEMA),
    )
    spark_events = from_polars(spark, events)
    hooks = SparkHooks()
    hooks.active = True
    plain = node(lambda frame: frame, inputs="events", outputs="out", name="plain")
    handed = hooks.before_node_run(plain, {"events": spark_events, "params:x": 1})
    assert handed is not None and set(handed) == {"events"}
    assert_frame_equal(handed["events"], events)  # the tie in ts keeps its file order
    native = node(split_local_validation, inputs=["events", "params:split"], outputs=["a", "b", "c", "d"])
    assert hooks.before_node_run(native, {"events": spark_events, "params:split": {}}) is None


def test_no_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(RuntimeError, match="Java 17"):
        spark_session()

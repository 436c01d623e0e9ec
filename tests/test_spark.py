"""The Spark preprocessing path produces the default path's tables (pyspark in local mode).

Marked ``spark``: needs pyspark and Java 17+ (skipped without them). One SparkSession serves the
module; the data is a few hundred generated sessions, so the time goes to starting the JVM.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java (apt-get install openjdk-17-jre-headless)", allow_module_level=True)

from gnn_recsys.baselines.covisitation import CovisitationConfig, CovisitationModel  # noqa: E402
from gnn_recsys.data.ingest import read_events  # noqa: E402
from gnn_recsys.data.split import split_events  # noqa: E402
from gnn_recsys.data.synthetic import SyntheticConfig, write_synthetic_otto  # noqa: E402
from gnn_recsys.data.validation import BadInputError  # noqa: E402
from gnn_recsys.spark.covisitation import pair_weights, top_neighbours  # noqa: E402
from gnn_recsys.spark.events import from_polars, read_otto_jsonl, to_polars  # noqa: E402
from gnn_recsys.spark.session import spark_session  # noqa: E402
from gnn_recsys.spark.split import split_events_spark  # noqa: E402

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark():
    session = spark_session({"spark.master": "local[2]", "spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def otto_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("otto")
    config = SyntheticConfig(num_items=300, num_train_sessions=600, num_test_sessions=100, seed=3)
    write_synthetic_otto(folder / "train.jsonl", folder / "test.jsonl", config)
    return folder / "train.jsonl", folder / "test.jsonl"


def test_ingestion_split_and_pairs_match_the_default_path(spark, otto_files) -> None:
    train_path, test_path = otto_files
    expected_events = read_events(train_path)
    events, report = read_otto_jsonl(spark, train_path)
    assert report.engine == "spark"
    assert (report.sessions, report.events) == (
        expected_events["session"].n_unique(),
        expected_events.height,
    )
    assert_frame_equal(to_polars(events), expected_events)
    test_events, _ = read_otto_jsonl(spark, test_path, min_events=1)
    assert_frame_equal(to_polars(test_events), read_events(test_path, min_events=1))

    # a short test window on the generated 28 days, so that many sessions start after the split
    expected = split_events(expected_events, test_days=7, seed=11)
    result = split_events_spark(events, test_days=7, seed=11)
    assert result.stats() == expected.stats()
    assert expected.counts["test_sessions"] > 20
    assert_frame_equal(to_polars(result.train), expected.train)
    assert_frame_equal(to_polars(result.test_inputs), expected.test_inputs)
    assert_frame_equal(to_polars(result.test_labels), expected.test_labels)

    # co-visitation pairs of what the baseline fits on: train events plus the observed test prefixes
    config = CovisitationConfig(max_events_per_session=12, time_window_ms=6 * 3_600_000, top_neighbours=10**6)
    fitted = pl.concat([expected.train, expected.test_inputs])
    everything = CovisitationModel.fit(fitted, config).neighbours  # every pair: top_neighbours is huge
    pairs = to_polars(pair_weights(result.train.unionByName(result.test_inputs), config))
    assert pairs.height == everything.height > 1000
    joined = everything.join(pairs, on=["aid", "neighbour"], how="left", suffix="_spark")
    assert joined["weight_spark"].null_count() == 0
    np.testing.assert_allclose(joined["weight_spark"], joined["weight"], rtol=1e-6)

    # each aid's top neighbours: same weights rank by rank; a different neighbour only on a tie
    top = 3
    default_top = CovisitationModel.fit(fitted, CovisitationConfig(**{**config.__dict__, "top_neighbours": top}))
    ranked = [
        frame.with_columns(pl.int_range(pl.len()).over("aid").alias("rank"))
        for frame in (default_top.neighbours, to_polars(top_neighbours(pair_weights(from_polars(spark, fitted), config), top)).sort(["aid", "weight", "neighbour"], descending=[False, True, False]))
    ]
    both = ranked[0].join(ranked[1], on=["aid", "rank"], how="full", suffix="_spark")
    assert both["weight"].null_count() == both["weight_spark"].null_count() == 0
    np.testing.assert_allclose(both["weight_spark"], both["weight"], rtol=1e-6)
    differ = both.filter(pl.col("neighbour") != pl.col("neighbour_spark"))
    assert differ.height < both.height / 100


def test_a_bad_line_is_named_by_file_line_and_field(spark, tmp_path: Path, otto_files) -> None:
    lines = otto_files[0].read_text().splitlines()[:5]
    lines[3] = lines[3].replace('"clicks"', '"click"', 1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInputError) as error:
        read_otto_jsonl(spark, bad)
    assert error.value.line == 4 and "type" in str(error.value)

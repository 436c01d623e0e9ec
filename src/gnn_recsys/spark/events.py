"""OTTO JSONL -> the event table on Spark, and the hand-over between Spark and polars tables.

Ingestion mirrors :mod:`gnn_recsys.data.ingest`: a fast path that parses with an explicit schema and
*verifies* every line, and the default path's precise line-by-line reader as the authority whenever
anything looks wrong. Verification runs per line in one aggregation over the file:

* the parse gave a session id and an events array whose fields are all present, in range (ids in
  0..2^31-1, Unix milliseconds in [1e11, 1e14)) and of a known event type;
* at least ``min_events`` events, timestamps non-decreasing (the ``ts`` array equals its sorted copy);
* the byte counts of a canonical OTTO line (as in the DuckDB path): ``4 + 8 n`` double quotes,
  ``3 n`` commas, ``3 + n + orders`` letters ``e`` and none of ``.``, ``E``, ``u``, ``f``. Spark's JSON
  reader ignores unknown keys and keeps the last of duplicate keys; these counts catch both;
* no session id on two lines (distinct ids == lines).

When a check fails, :func:`gnn_recsys.data.ingest.ingest_jsonl` re-reads the file and either raises
:class:`~gnn_recsys.data.validation.BadInputError` naming file, line and field, or (``on_bad_line:
skip``) returns the table without the bad lines; that table is handed to Spark. gzip files are read by
Spark when their name ends in ``.gz``; any other gzip file goes through the precise path.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gnn_recsys.data.ingest import IngestReport, check_compression, ingest_jsonl
from gnn_recsys.data.schema import EVENT_COLUMNS, EVENT_SCHEMA, EVENT_TYPES, INT32_MAX, TS_MAX_MS, TS_MIN_MS
from gnn_recsys.data.split import positions_in_session, session_runs

logger = logging.getLogger(__name__)

#: The Spark event table: the contract's columns plus ``pos``, the event's position in its session.
SPARK_EVENT_SCHEMA = T.StructType(
    [
        T.StructField("session", T.IntegerType(), False),
        T.StructField("aid", T.IntegerType(), False),
        T.StructField("ts", T.LongType(), False),
        T.StructField("type", T.ByteType(), False),
        T.StructField("pos", T.IntegerType(), False),
    ]
)
_LINE_SCHEMA = "session BIGINT, events ARRAY<STRUCT<aid: BIGINT, ts: BIGINT, type: STRING>>"


def _count_chars(column: Column, chars: str) -> Column:
    """How many of ``chars`` a string holds (length minus the length without them)."""
    return F.length(column) - F.length(F.translate(column, chars, ""))


def _type_code(column: Column) -> Column:
    expr = F.when(column == EVENT_TYPES[0], F.lit(0))
    for code, name in enumerate(EVENT_TYPES[1:], start=1):
        expr = expr.when(column == name, F.lit(code))
    return expr.cast(T.ByteType())


def _is_type(name: str) -> Callable[[Column], Column]:
    """An array-filter predicate (one parameter: Spark reads a second one as the element index)."""
    return lambda e: e.type == name


def _line_checks(lines: DataFrame, min_events: int) -> DataFrame:
    """One row per line: the parsed session and whether the line passes every check."""
    j = F.from_json("value", _LINE_SCHEMA, {"mode": "PERMISSIVE"})
    parsed = lines.select("value", j.alias("j"))
    events = F.col("j.events")
    n = F.size(events)
    bad_event = F.exists(
        events,
        lambda e: (
            e.aid.isNull()
            | (e.aid < 0)
            | (e.aid > INT32_MAX)
            | e.ts.isNull()
            | (e.ts < TS_MIN_MS)
            | (e.ts >= TS_MAX_MS)
            | e.type.isNull()
            | ~e.type.isin(*EVENT_TYPES)
        ),
    )
    ts = F.transform(events, lambda e: e.ts)
    orders = F.size(F.filter(events, lambda e: e.type == EVENT_TYPES[2]))
    ok = (
        F.col("j").isNotNull()
        & F.col("j.session").isNotNull()
        & F.col("j.session").between(0, INT32_MAX)
        & events.isNotNull()
        & (n >= min_events)
        & ~bad_event
        & (F.array_sort(ts) == ts)
        & (_count_chars(F.col("value"), '"') == 4 + 8 * n)
        & (_count_chars(F.col("value"), ",") == 3 * n)
        & (_count_chars(F.col("value"), "e") == 3 + n + orders)
        & (_count_chars(F.col("value"), ".Euf") == 0)
    )
    return parsed.select(F.col("j.session").alias("session"), n.alias("n"), ok.alias("ok"), "j")


def _explode(checked: DataFrame) -> DataFrame:
    exploded = checked.select(
        F.col("session").cast(T.IntegerType()).alias("session"), F.posexplode("j.events").alias("pos", "e")
    )
    return exploded.select(
        "session",
        F.col("e.aid").cast(T.IntegerType()).alias("aid"),
        F.col("e.ts").alias("ts"),
        _type_code(F.col("e.type")).alias("type"),
        F.col("pos").cast(T.IntegerType()).alias("pos"),
    )


def read_otto_jsonl(
    spark: SparkSession,
    path: str | Path,
    *,
    min_events: int = 2,
    on_bad_line: str = "raise",
    rejects_path: str | Path | None = None,
    max_bad_share: float = 1.0,
) -> tuple[DataFrame, IngestReport]:
    """The event table of an OTTO JSONL file as a Spark DataFrame (with ``pos``) and its report.

    Same rules and arguments as :func:`gnn_recsys.data.ingest.ingest_jsonl` (see the module docstring
    for how the checks are split between Spark and the precise path).
    """
    src = Path(path)
    if not src.is_file():
        raise FileNotFoundError(src)
    began = time.perf_counter()
    compression = check_compression(src)
    size = src.stat().st_size

    def precise() -> tuple[DataFrame, IngestReport]:
        return _precise(
            spark, src, min_events=min_events, on_bad_line=on_bad_line, rejects_path=rejects_path,
            max_bad_share=max_bad_share, began=began,
        )  # fmt: skip

    if compression == "gzip" and not src.name.endswith(".gz"):
        logger.info("%s: gzip without a .gz name, which Spark cannot detect; reading it in Python", src)
        return precise()

    # absolute: the JVM keeps the working directory it started in, which need not be the current one
    checked = _line_checks(spark.read.text(str(src.resolve())), min_events)
    stats = checked.agg(
        F.count(F.lit(1)).alias("lines"),
        F.sum((~F.col("ok")).cast("long")).alias("bad"),
        F.count_distinct("session").alias("sessions"),
        *(F.sum(F.size(F.filter("j.events", _is_type(name)))).alias(name) for name in EVENT_TYPES),
    ).first()
    assert stats is not None
    if stats["lines"] and (stats["bad"] or stats["sessions"] != stats["lines"]):
        logger.info(
            "%s: %d line(s) fail the Spark checks, %d repeated session id(s); locating them line by line",
            src, stats["bad"], stats["lines"] - stats["sessions"],
        )  # fmt: skip
        return precise()
    if rejects_path is not None:
        Path(rejects_path).write_bytes(b"")  # a clean file has no rejects; never leave stale ones
    per_type = {name: int(stats[name] or 0) for name in EVENT_TYPES}
    report = IngestReport(
        path=str(src),
        dest="",
        engine="spark",
        bytes=size,
        lines=int(stats["lines"]),
        sessions=int(stats["sessions"]),
        events=sum(per_type.values()),
        events_by_type=per_type,
        seconds=time.perf_counter() - began,
    )
    return _explode(checked), report


def _precise(
    spark: SparkSession,
    src: Path,
    *,
    min_events: int,
    on_bad_line: str,
    rejects_path: str | Path | None,
    max_bad_share: float,
    began: float,
) -> tuple[DataFrame, IngestReport]:
    """The default path's reader decides (raises naming the line, or skips); its table goes to Spark."""
    with tempfile.TemporaryDirectory(prefix="spark_ingest_") as tmp:
        dest = Path(tmp) / "events.parquet"
        report = ingest_jsonl(
            src,
            dest,
            min_events=min_events,
            on_bad_line=on_bad_line,  # type: ignore[arg-type]
            rejects_path=rejects_path,
            max_bad_share=max_bad_share,
            progress=False,
        )
        events = pl.read_parquet(dest)
    report.seconds = time.perf_counter() - began
    return from_polars(spark, events), report


def with_positions(events: pl.DataFrame) -> pl.DataFrame:
    """An event table (sessions contiguous) plus ``pos``, each event's position in its session."""
    _, lengths = session_runs(events["session"])
    return events.select(EVENT_COLUMNS).with_columns(
        pl.Series("pos", positions_in_session(lengths), pl.Int32)
    )


def from_polars(spark: SparkSession, events: pl.DataFrame) -> DataFrame:
    """A polars event table as a Spark event table (``pos`` added from the row order)."""
    table = with_positions(events).to_arrow()
    return spark.createDataFrame(table.cast(_arrow_schema()), schema=SPARK_EVENT_SCHEMA)


def _arrow_schema() -> pa.Schema:
    return pa.schema(
        [
            ("session", pa.int32()),
            ("aid", pa.int32()),
            ("ts", pa.int64()),
            ("type", pa.int8()),
            ("pos", pa.int32()),
        ]
    )


def empty_events(spark: SparkSession) -> DataFrame:
    """A Spark event table without rows."""
    return spark.createDataFrame([], schema=SPARK_EVENT_SCHEMA)


def to_polars(frame: DataFrame) -> pl.DataFrame:
    """A Spark table as the default path's polars table, in its canonical row order.

    An event table (``pos`` column) comes back sorted by session and position without ``pos``, with
    the contract's dtypes; any other table comes back sorted by all its columns, left to right.
    """
    table = frame.toArrow()
    result = pl.from_arrow(table)
    assert isinstance(result, pl.DataFrame)
    if "pos" in result.columns and set(EVENT_COLUMNS) <= set(result.columns):
        return result.sort(["session", "pos"]).select(
            pl.col(name).cast(dtype) for name, dtype in EVENT_SCHEMA.items()
        )
    return result.sort(result.columns)

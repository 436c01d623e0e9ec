"""Event tables (CSV/TSV or parquet, one row per event) -> the typed event table.

Users' own data is usually a table such as YOOCHOOSE's ``SessionId, ItemId, Time``, not OTTO JSONL.
This module reads one with a column mapping and an event-type mapping (:class:`TableFormat`) into
exactly the table that :mod:`gnn_recsys.data.ingest` makes from JSONL (``session`` Int32, ``aid``
Int32, ``ts`` Int64 Unix ms, ``type`` Int8), under the same bad-input contract.

Choices, in order of the pipeline:

* **Reading.** CSV/TSV with polars, numbers typed while reading (fast path); if that fails (a value
  that is no number, string ids, a ragged row, broken quoting, invalid UTF-8) the file is read again
  as text and every value is checked by vectorised casts; rows polars cannot split at all are located
  by Python's ``csv`` module. All three agree on every value (surrounding spaces are ignored in
  numbers), so a row's fate never depends on other rows. Parquet is read with its own column types;
  gzip is read transparently. The separator comes from the extension (``.csv`` comma, ``.tsv`` and
  ``.tab`` tab), otherwise from the header line.
* **Rows** are numbered 1-based *data rows*: the header is not counted, a blank line is a row.
  Every error names file, row and the file's own column name.
* **ts** becomes Unix ms: ``ts_unit`` ``s``/``ms``/``us``/``ns`` (fractions allowed, rounded to the
  nearest ms, e.g. ``1396860669.277`` s -> ``1396860669277``) or ``datetime`` (text parsed with
  ``ts_format``, or a format inferred from the first value; naive times are taken as UTC). Datetime
  and date columns of parquet files need no unit. Implausible results (before 1973 or after 5138,
  i.e. a wrong ``ts_unit``) are bad rows, as in JSONL.
* **type**: the value, as text, is looked up in ``event_types`` (default: the OTTO names). A file
  without the type column holds clicks only; an unknown value is a bad row.
* **ids**: when every session (aid) id of the train and test file is an integer in 0..2**31-1 it is
  used as is. Otherwise (text ids, 64-bit ids) all ids of that column are replaced by dense Int32
  codes in order of first appearance (train, then test), logged with an example, and the mapping is
  returned (``session_id_map``/``aid_id_map``: code, ``source_id``) so that candidates can be
  translated back. ``id_codes="never"`` makes such an id a bad row instead.
* **Order**: a table's row order does not carry sessions the way a JSONL line does, so events are
  grouped: sessions in order of first appearance, each session's events stably sorted by ``ts`` (ties
  keep file order). Nothing is dropped; the moved events are counted (``repairs.reordered_events``)
  and logged. A table already grouped and in time order is left as it is.
* **Bad rows** (missing value, unparsable number or date, negative or implausible time, unknown
  type, malformed CSV row, too few events in a session: train 2, test 1) raise
  :class:`BadInputError` at the first one (``on_bad_line="raise"``), or are skipped, counted by
  reason, logged and written to ``rejects_path`` (``on_bad_line="skip"``; JSONL records ``row``,
  ``reason``, ``field``, ``message``, ``values``), stopping with :class:`TooManyBadLinesError` when
  more than ``max_bad_share`` of the rows (or all of them) were rejected.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from gnn_recsys.data.ingest import IngestReport, OnBadLine, check_compression, open_maybe_gzip
from gnn_recsys.data.schema import EVENT_SCHEMA, EVENT_TYPES, INT32_MAX, TS_MAX_MS, TS_MIN_MS
from gnn_recsys.data.validation import (
    BLANK_LINE,
    DUPLICATE_SESSION,
    MALFORMED_ROW,
    MISSING_FIELD,
    OUT_OF_RANGE,
    TOO_FEW_EVENTS,
    TS_NEGATIVE,
    TS_NOT_MS,
    UNKNOWN_EVENT_TYPE,
    WRONG_TYPE,
    BadInputError,
    check_bad_share,
    format_row_problem,
)

logger = logging.getLogger(__name__)

TS_UNITS: tuple[str, ...] = ("s", "ms", "us", "ns", "datetime")
ID_CODES: tuple[str, ...] = ("auto", "never")
DEFAULT_EVENT_TYPES: Mapping[str, str] = {name: name for name in EVENT_TYPES}
_KEYS = ("session", "aid", "ts", "type")
_MS_PER_UNIT = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
_INT_DIVISOR = {"us": 1_000, "ns": 1_000_000}
_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_SNIFFED = ("\t", ",", ";", "|")
_PARQUET_MAGIC = b"PAR1"
_ID_MAP_SOURCE = "source_id"
_EMPTY_LOADED = pl.DataFrame(
    schema={"row": pl.UInt32, "session": pl.Int64, "aid": pl.Int64, "ts": pl.Int64, "type": pl.Int8}
)


@dataclass(frozen=True)
class TableFormat:
    """How to read an event table: column names, time unit, event types, separator, id policy."""

    session: str = "session"
    aid: str = "aid"
    ts: str = "ts"
    #: The event-type column; a file without it (or ``None``) holds clicks only.
    type: str | None = "type"
    ts_unit: str = "ms"
    #: strftime format for ``ts_unit="datetime"`` text (None: inferred from the first value).
    ts_format: str | None = None
    #: Raw type value (as text) -> ``clicks``/``carts``/``orders``.
    event_types: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_EVENT_TYPES))
    #: None: from the extension, else from the header line.
    separator: str | None = None
    #: ``auto``: dense codes for ids that are not all integers in 0..2**31-1; ``never``: bad rows.
    id_codes: str = "auto"

    def __post_init__(self) -> None:
        if self.ts_unit not in TS_UNITS:
            raise ValueError(f"ts_unit must be one of {TS_UNITS}, got {self.ts_unit!r}")
        if self.id_codes not in ID_CODES:
            raise ValueError(f"id_codes must be one of {ID_CODES}, got {self.id_codes!r}")
        names = [self.session, self.aid, self.ts, self.type]
        if any(not isinstance(name, str) or not name for name in names[:3]):
            raise ValueError(f"columns.session, columns.aid and columns.ts must be names, got {names[:3]}")
        given = [name for name in names if name is not None]
        if len(set(given)) != len(given):
            raise ValueError(f"columns must name different columns, got {given}")
        event_types = {str(raw): str(name) for raw, name in (self.event_types or {}).items()}
        wrong = {raw: name for raw, name in event_types.items() if name not in EVENT_TYPES}
        if wrong:
            raise ValueError(f"event_types must map onto {EVENT_TYPES}, got {wrong}")
        object.__setattr__(self, "event_types", event_types)
        separator = self.separator
        if separator is not None:
            separator = {"\\t": "\t", "tab": "\t"}.get(separator, separator)
            if len(separator) != 1:
                raise ValueError(f"separator must be one character (or 'tab'), got {self.separator!r}")
            object.__setattr__(self, "separator", separator)

    @classmethod
    def from_params(cls, columns: Mapping[str, str | None] | None = None, **options: Any) -> TableFormat:
        """From the pipeline's parameters: ``columns: {session, aid, ts, type}`` plus the options."""
        columns = dict(columns or {})
        unknown = set(columns) - set(_KEYS)
        if unknown:
            raise ValueError(f"columns: unknown key(s) {sorted(unknown)}; expected {list(_KEYS)}")
        return cls(**columns, **{k: v for k, v in options.items() if v is not None})

    def column(self, key: str) -> str:
        name = getattr(self, key)
        assert name is not None
        return name


@dataclass
class LoadedTable:
    """One file's valid events, ids still as read (Int64 or text), with its ingest report."""

    frame: pl.DataFrame  # row (1-based data row), session, aid, ts (Unix ms), type (code)
    report: IngestReport
    names: dict[str, str]  # key -> the file's column name


@dataclass
class EventTables:
    """Typed train/test event tables, the id mappings and the per-file reports."""

    train: pl.DataFrame
    test: pl.DataFrame
    session_id_map: pl.DataFrame  # session (Int32 code), source_id; empty: ids used as is
    aid_id_map: pl.DataFrame  # aid (Int32 code), source_id; empty: ids used as is
    train_report: IngestReport
    test_report: IngestReport | None


# ------------------------------------------------------------------------------------------ reading


def _sniff_separator(path: Path, header: str) -> str:
    counts = {sep: header.count(sep) for sep in _SNIFFED}
    best = max(counts, key=counts.__getitem__)
    if not counts[best]:
        raise ValueError(f"{path}: cannot tell the separator from the header {header[:80]!r}; set separator")
    return best


def _header(path: Path, compression: str | None, separator: str | None) -> tuple[list[str], str] | None:
    """The header's column names and the separator; None for an empty file."""
    with open_maybe_gzip(path, compression) as fh:
        first = fh.readline()
    if not first.strip():
        if first:
            raise ValueError(f"{path}: the first line (the header) is blank")
        return None
    try:
        line = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: the header line is not UTF-8 text (is this a table?)") from None
    if separator is None:
        name = path.name.lower().removesuffix(".gz")
        separator = _SEPARATORS.get(Path(name).suffix) or _sniff_separator(path, line)
    return next(csv.reader([line], delimiter=separator)), separator


def _read_csv_python(
    path: Path, compression: str | None, separator: str, width: int, positions: list[int]
) -> tuple[pl.DataFrame, dict[int, str]]:
    """Text columns at ``positions`` and the rows that cannot be split (row -> problem).

    The slow authority when polars refuses the file. Agrees with polars on every row polars accepts:
    a blank line is a row of nulls, a short row has nulls at its end, an empty field is null.
    """
    columns: list[list[str | None]] = [[] for _ in positions]
    malformed: dict[int, str] = {}
    row = 0
    with (
        open_maybe_gzip(path, compression) as raw,
        io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="") as text,
    ):
        reader = csv.reader(text, delimiter=separator, strict=True)
        next(reader)
        try:
            for row, fields in enumerate(reader, start=1):  # noqa: B007 (row is used after the loop)
                values = [fields[i] if i < len(fields) and fields[i] != "" else None for i in positions]
                problem = None
                if len(fields) > width:
                    problem = f"row has {len(fields)} fields, the header {width}"
                else:
                    try:
                        "".join(value for value in values if value is not None).encode("utf-8")
                    except UnicodeEncodeError:
                        problem = "invalid UTF-8 in the row"
                if problem is not None:
                    malformed[row] = problem
                    values = [None] * len(positions)
                for column, value in zip(columns, values, strict=True):
                    column.append(value)
        except csv.Error as exc:
            # Broken quoting swallows the rest of the file: nothing after it can be read safely.
            raise BadInputError(
                str(path),
                row + 1,
                MALFORMED_ROW,
                None,
                f"cannot split the row into fields ({exc}); the file cannot be read past it",
                unit="row",
            ) from None
    frame = pl.DataFrame(
        {f"c{i}": values for i, values in enumerate(columns)},
        schema={f"c{i}": pl.String for i in range(len(positions))},
    )
    return frame, malformed


def _typed_overrides(fmt: TableFormat) -> dict[str, pl.DataType]:
    """Column types for the fast CSV read: integer ids and numeric time, text type."""
    overrides: dict[str, pl.DataType] = {fmt.session: pl.Int64(), fmt.aid: pl.Int64()}
    if fmt.ts_unit == "s":
        overrides[fmt.ts] = pl.Float64()
    elif fmt.ts_unit == "datetime":
        overrides[fmt.ts] = pl.String()
    else:
        overrides[fmt.ts] = pl.Int64()
    if fmt.type is not None:
        overrides[fmt.type] = pl.String()
    return overrides


def _read_raw(
    path: Path, fmt: TableFormat, compression: str | None
) -> tuple[pl.DataFrame, dict[int, str], dict[str, str], str]:
    """The mapped columns renamed to keys, malformed rows, key -> file column name, engine."""
    if compression is None:
        with path.open("rb") as fh:
            is_parquet = fh.read(4) == _PARQUET_MAGIC
    else:
        is_parquet = False
    if is_parquet:
        available = list(pl.read_parquet_schema(path))
        how = "the parquet file has columns"
    else:
        found = _header(path, compression, fmt.separator)
        if found is None:
            return pl.DataFrame(), {}, {}, "empty"
        available, separator = found
        how = f"the header (separator {separator!r}) has columns"
    names = _resolve_columns(path, fmt, available, how)
    wanted = list(names.values())
    rename = {name: key for key, name in names.items()}
    if is_parquet:
        try:
            return pl.read_parquet(path, columns=wanted).rename(rename), {}, names, "parquet"
        except pl.exceptions.PolarsError as exc:
            raise ValueError(f"{path}: cannot read the parquet file ({exc})") from None
    overrides = _typed_overrides(fmt)
    common: dict[str, Any] = {
        "separator": separator,
        "columns": wanted,
        "infer_schema": False,
        "encoding": "utf8",
        "raise_if_empty": False,
    }
    try:
        frame = pl.read_csv(path, schema_overrides={n: overrides[n] for n in wanted}, **common)
        return frame.rename(rename), {}, names, "polars"
    except pl.exceptions.PolarsError as exc:
        logger.info("%s: typed read failed (%s); reading as text", path.name, str(exc).splitlines()[0])
    try:
        return pl.read_csv(path, **common).rename(rename), {}, names, "polars-text"
    except pl.exceptions.PolarsError as exc:
        logger.info(
            "%s: text read failed (%s); locating rows one by one", path.name, str(exc).splitlines()[0]
        )
    if len(set(available)) != len(available):
        raise ValueError(f"{path}: the header repeats a column name: {available}")
    positions = [available.index(name) for name in wanted]
    frame, malformed = _read_csv_python(path, compression, separator, len(available), positions)
    frame.columns = list(names)
    return frame, malformed, names, "python-csv"


def _resolve_columns(path: Path, fmt: TableFormat, available: list[str], how: str) -> dict[str, str]:
    names: dict[str, str] = {}
    for key in _KEYS:
        name = getattr(fmt, key)
        if name is None:
            continue
        if name in available:
            names[key] = name
        elif key == "type":
            logger.warning(
                "%s: no event-type column %r (columns.type): every event is a click; %s %s",
                path,
                name,
                how,
                available,
            )
        else:
            raise ValueError(f"{path}: no column {name!r} (columns.{key}); {how} {available}")
    return names


# ------------------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class _Check:
    reason: str
    key: str | None  # session/aid/ts/type, None: the whole row
    condition: pl.Expr


def _id_parts(column: str, dtype: pl.DataType, path: Path, name: str) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """``(missing, as_int, text)`` for an id column of any supported dtype."""
    col = pl.col(column)
    if dtype.is_integer():
        return col.is_null(), col.cast(pl.Int64, strict=False), col.cast(pl.String)
    if dtype.is_float():
        integral = col.is_finite() & (col == col.floor())
        as_int = pl.when(integral).then(col.cast(pl.Int64, strict=False))
        return col.is_null() | col.is_nan(), as_int, col.cast(pl.String)
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        text = col.cast(pl.String).str.strip_chars()
        return col.is_null(), text.cast(pl.Int64, strict=False), text
    raise ValueError(f"{path}: column {name!r} has dtype {dtype}; ids must be integers or text")


def _parse_datetimes(values: pl.Series, ts_format: str | None, path: Path, name: str) -> pl.Series:
    """Text -> Datetime (null where unparsable). Eager: format inference needs the data (time zones)."""
    text = values.str.strip_chars()
    try:
        return text.str.to_datetime(format=ts_format, strict=False, time_unit="us")
    except pl.exceptions.PolarsError as exc:
        first = text.drop_nulls().head(1).to_list()
        raise ValueError(
            f"{path}: cannot read column {name!r} as date-times (first value "
            f"{first[0] if first else None!r}, ts_format={ts_format!r}): {str(exc).splitlines()[0]}; "
            "set ts_format"
        ) from None


def _ts_parts(values: pl.Series, fmt: TableFormat, path: Path, name: str) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """``(unparsable, ms, ms_float)``: Unix ms as Int64 (rounded) and as Float64 for range checks."""
    col = pl.col("ts")
    dtype = values.dtype
    never = pl.lit(False)
    if isinstance(dtype, pl.Datetime):
        ms = (col.dt.epoch("us") + 500) // 1000
        return never, ms, ms.cast(pl.Float64)
    if dtype == pl.Date:
        ms = col.cast(pl.Datetime("ms")).dt.epoch("ms")
        return never, ms, ms.cast(pl.Float64)
    unit = fmt.ts_unit
    if unit == "datetime":
        if dtype != pl.String:
            raise ValueError(
                f"{path}: ts_unit is 'datetime' but column {name!r} holds {dtype}; set ts_unit to "
                "s, ms, us or ns"
            )
        parsed = pl.lit(_parse_datetimes(values, fmt.ts_format, path, name))
        ms = (parsed.dt.epoch("us") + 500) // 1000
        return col.is_not_null() & parsed.is_null(), ms, ms.cast(pl.Float64)
    factor = _MS_PER_UNIT[unit]
    if dtype.is_integer():
        as_int, as_float = col.cast(pl.Int64, strict=False), None
    elif dtype.is_float():
        as_int, as_float = None, col
    elif dtype == pl.String:
        text = col.str.strip_chars()
        as_int, as_float = text.cast(pl.Int64, strict=False), text.cast(pl.Float64, strict=False)
    else:
        raise ValueError(f"{path}: column {name!r} has dtype {dtype}; expected numbers ({unit})")
    from_float = None
    if as_float is not None:
        from_float = pl.when(as_float.is_finite()).then(as_float * factor)
    if as_int is None:
        assert from_float is not None
        return col.is_not_null() & from_float.is_null(), from_float.round(0).cast(pl.Int64), from_float
    if unit in _INT_DIVISOR:
        divisor = _INT_DIVISOR[unit]
        int_ms = (as_int + divisor // 2) // divisor
    else:
        int_ms = as_int * int(factor)  # values out of the plausible range are rejected before use
    int_float = as_int.cast(pl.Float64) * factor
    if from_float is None:
        return col.is_not_null() & as_int.is_null(), int_ms, int_float
    ms = pl.when(as_int.is_not_null()).then(int_ms).otherwise(from_float.round(0).cast(pl.Int64))
    ms_float = pl.when(as_int.is_not_null()).then(int_float).otherwise(from_float)
    return col.is_not_null() & ms_float.is_null(), ms, ms_float


def _problem_text(reason: str, key: str | None, value: str | None, fmt: TableFormat, ms: float | None) -> str:
    if reason == BLANK_LINE:
        return "blank row (no values)"
    if reason == MISSING_FIELD:
        return "missing value"
    if reason == WRONG_TYPE and key == "ts":
        if fmt.ts_unit == "datetime":
            how = f"format {fmt.ts_format!r}" if fmt.ts_format else "format inferred from the first value"
            return f"cannot parse {value!r} as a date-time ({how}; set ts_format)"
        return f"expected a number (ts_unit={fmt.ts_unit!r}), got {value!r}"
    if reason == WRONG_TYPE:
        return f"expected an integer id, got {value!r} (id_codes='never')"
    if reason == OUT_OF_RANGE:
        return f"{value} is outside 0..{INT32_MAX} (id_codes='never'; 'auto' maps such ids to codes)"
    if reason == TS_NEGATIVE:
        return f"negative timestamp {value}"
    if reason == TS_NOT_MS:
        return (
            f"{value} (ts_unit={fmt.ts_unit!r}) is {ms:.0f} Unix ms, outside the plausible range "
            f"[{TS_MIN_MS}, {TS_MAX_MS}) (years 1973..5138): check ts_unit"
        )
    if reason == UNKNOWN_EVENT_TYPE:
        return (
            f"unknown event type {value!r}; event_types maps {sorted(fmt.event_types)} onto "
            f"{EVENT_TYPES} (add it to event_types)"
        )
    raise AssertionError(reason)


@dataclass
class _BadRow:
    row: int
    reason: str
    column: str | None
    problem: str
    values: dict[str, str | None] | None

    def message(self, path: Path) -> str:
        return format_row_problem(str(path), self.row, self.column, self.problem)


def load_event_table(
    path: str | Path,
    fmt: TableFormat | None = None,
    *,
    min_events: int = 2,
    on_bad_line: OnBadLine = "raise",
    rejects_path: str | Path | None = None,
    max_bad_share: float = 1.0,
) -> LoadedTable:
    """Read, check and group one event table; ids stay as read (see :func:`encode_ids`)."""
    fmt = fmt or TableFormat()
    if min_events < 1:
        raise ValueError("min_events must be >= 1 (an empty session is never valid)")
    if on_bad_line not in ("raise", "skip"):
        raise ValueError(f"on_bad_line must be 'raise' or 'skip', got {on_bad_line!r}")
    if not 0.0 <= max_bad_share <= 1.0:
        raise ValueError(f"max_bad_share must be within 0..1, got {max_bad_share!r}")
    src = Path(path)
    if not src.is_file():
        raise FileNotFoundError(src)
    began = time.perf_counter()
    compression = check_compression(src)
    raw, malformed, names, engine = _read_raw(src, fmt, compression)
    rows = raw.height
    if not rows:  # an empty file or a header alone: no events (the pipeline decides if that is fatal)
        report = IngestReport(
            path=str(src),
            dest="",
            engine=engine,
            bytes=src.stat().st_size,
            lines=0,
            sessions=0,
            events=0,
            events_by_type=dict.fromkeys(EVENT_TYPES, 0),
            seconds=time.perf_counter() - began,
        )
        return LoadedTable(_EMPTY_LOADED.clear(), report, names)
    # Blank text is a missing value on every reader (polars keeps a quoted "" as text, csv does not).
    raw = raw.with_columns(
        pl.when(pl.col(key).str.strip_chars() != "").then(pl.col(key)).alias(key)
        for key, dtype in raw.schema.items()
        if dtype == pl.String
    ).with_row_index("row", offset=1)
    checks, derived, id_texts = _checks(raw, fmt, src, names, malformed)
    problem = pl.lit(None, dtype=pl.Int32)
    for index, check in reversed(list(enumerate(checks))):
        problem = pl.when(check.condition).then(pl.lit(index, dtype=pl.Int32)).otherwise(problem)
    table = raw.lazy().with_columns(**derived, problem=problem).collect()
    bad: list[_BadRow] = []
    good = table
    if table["problem"].null_count() < rows:  # the happy path skips all of this
        bad_frame = table.filter(pl.col("problem").is_not_null())
        if on_bad_line == "raise":
            bad_frame = bad_frame.head(1)
        bad = [
            _bad_row(record, checks, fmt, names, malformed)
            for record in bad_frame.select(
                "row", "problem", "ms_float", *[pl.col(k).cast(pl.String) for k in names]
            ).iter_rows(named=True)
        ]
        if on_bad_line == "raise":
            _raise(src, bad[0])
        good = table.filter(pl.col("problem").is_null())
    good = _choose_ids(good, fmt, id_texts)
    good, short = _drop_short_sessions(good, min_events, names)
    if short:
        records = [_BadRow(row, TOO_FEW_EVENTS, names["session"], problem, None) for row, problem in short]
        if on_bad_line == "raise":
            _raise(src, records[0])
        bad = sorted(bad + records, key=lambda b: b.row)
    good, reordered, sessions = _group_sessions(good)
    if reordered:
        logger.warning(
            "%s: %d of %d events were moved to group sessions (in order of first appearance) and "
            "sort each session's events by time (stable)",
            src,
            reordered,
            good.height,
        )
    counts = Counter(b.reason for b in bad)
    if bad:
        if rejects_path is not None:
            _write_rejects(Path(rejects_path), src, bad)
        logger.warning(
            "%s: skipped %d bad row(s) of %d: %s%s",
            src,
            len(bad),
            rows,
            dict(counts),
            f"; rejected rows written to {rejects_path}" if rejects_path is not None else "",
        )
        check_bad_share(
            str(src),
            len(bad),
            rows,
            max_bad_share,
            unit="row",
            rejects_path=str(rejects_path) if rejects_path is not None else None,
        )
    elif rejects_path is not None:
        Path(rejects_path).write_bytes(b"")  # never leave stale rejects behind
    per_type = good["type"].value_counts() if good.height else None
    by_code = dict(per_type.iter_rows()) if per_type is not None else {}
    report = IngestReport(
        path=str(src),
        dest="",
        engine=engine,
        bytes=src.stat().st_size,
        lines=rows,
        sessions=sessions,
        events=good.height,
        events_by_type={name: int(by_code.get(code, 0)) for code, name in enumerate(EVENT_TYPES)},
        bad_lines=dict(counts),
        seconds=time.perf_counter() - began,
        repairs={"reordered_events": reordered},
    )
    logger.info(
        "read %s: %d rows -> %d sessions, %d events in %.2f s (%s)",
        src.name,
        rows,
        report.sessions,
        report.events,
        report.seconds,
        engine,
    )
    return LoadedTable(good, report, names)


def _checks(
    raw: pl.DataFrame, fmt: TableFormat, path: Path, names: dict[str, str], malformed: dict[int, str]
) -> tuple[list[_Check], dict[str, pl.Expr], dict[str, pl.Expr]]:
    """The row rules in priority order, the derived columns (ms, type code, integer ids) and the ids
    as text (computed only when some id is not an integer)."""
    checks: list[_Check] = []
    derived: dict[str, pl.Expr] = {}
    id_texts: dict[str, pl.Expr] = {}
    if malformed:
        checks.append(_Check(MALFORMED_ROW, None, pl.col("row").is_in(list(malformed))))
    checks.append(_Check(BLANK_LINE, None, pl.all_horizontal(pl.col(k).is_null() for k in names)))
    for key in ("session", "aid"):
        missing, as_int, text = _id_parts(key, raw.schema[key], path, names[key])
        derived[f"{key}_int"] = as_int
        id_texts[key] = text
        checks.append(_Check(MISSING_FIELD, key, missing))
        if fmt.id_codes == "never":
            checks.append(_Check(WRONG_TYPE, key, as_int.is_null()))
            checks.append(_Check(OUT_OF_RANGE, key, ~as_int.is_between(0, INT32_MAX)))
    unparsable, ms, ms_float = _ts_parts(raw["ts"], fmt, path, names["ts"])
    derived["ms"] = ms
    derived["ms_float"] = ms_float
    checks.append(_Check(MISSING_FIELD, "ts", pl.col("ts").is_null()))
    checks.append(_Check(WRONG_TYPE, "ts", unparsable))
    checks.append(_Check(TS_NEGATIVE, "ts", ms_float < 0))
    checks.append(_Check(TS_NOT_MS, "ts", (ms_float < TS_MIN_MS) | (ms_float >= TS_MAX_MS)))
    if "type" in names:
        code = (
            pl.col("type")
            .cast(pl.String)
            .str.strip_chars()
            .replace_strict(
                {raw_value: EVENT_TYPES.index(name) for raw_value, name in fmt.event_types.items()},
                default=None,
                return_dtype=pl.Int8,
            )
        )
        derived["code"] = code
        checks.append(_Check(MISSING_FIELD, "type", pl.col("type").is_null()))
        checks.append(_Check(UNKNOWN_EVENT_TYPE, "type", code.is_null()))
    else:
        derived["code"] = pl.lit(0, dtype=pl.Int8)
    return checks, derived, id_texts


def _bad_row(
    record: dict[str, Any],
    checks: list[_Check],
    fmt: TableFormat,
    names: dict[str, str],
    malformed: dict[int, str],
) -> _BadRow:
    check = checks[record["problem"]]
    row = record["row"]
    if check.reason == MALFORMED_ROW:
        return _BadRow(row, MALFORMED_ROW, None, malformed[row], None)
    values = {names[k]: record[k] for k in names}
    value = record[check.key] if check.key is not None else None
    problem = _problem_text(check.reason, check.key, value, fmt, record["ms_float"])
    column = names[check.key] if check.key is not None else None
    return _BadRow(row, check.reason, column, problem, values)


def _raise(path: Path, bad: _BadRow) -> None:
    raise BadInputError(str(path), bad.row, bad.reason, bad.column, bad.problem, unit="row")


def _write_rejects(dest: Path, src: Path, bad: list[_BadRow]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        for item in bad:
            record = {
                "row": item.row,
                "reason": item.reason,
                "field": item.column,
                "message": item.message(src),
                "values": item.values,
            }
            out.write(orjson.dumps(record) + b"\n")


def _choose_ids(good: pl.DataFrame, fmt: TableFormat, id_texts: dict[str, pl.Expr]) -> pl.DataFrame:
    """Integer ids where every (valid) value is an integer, text otherwise; the contract columns."""
    columns = [pl.col("row"), pl.col("ms").alias("ts"), pl.col("code").alias("type")]
    if not good.height:
        return _EMPTY_LOADED.clear()
    for key in ("session", "aid"):
        as_int = f"{key}_int"
        if fmt.id_codes == "never" or good[as_int].null_count() == 0:
            columns.append(pl.col(as_int).alias(key))
        else:
            columns.append(id_texts[key].alias(key))
    return good.select(columns).select("row", "session", "aid", "ts", "type")


def _drop_short_sessions(
    good: pl.DataFrame, min_events: int, names: dict[str, str]
) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """Rows of sessions with fewer than ``min_events`` events: ``(row, problem)``, and the rest."""
    if not good.height:
        return good, []
    size = pl.len().over("session")
    short = good.filter(size < min_events)
    if not short.height:
        return good, []
    counts = short.group_by("session").agg(pl.len().alias("n"), pl.col("row").min().alias("first"))
    first = {s: (n, r) for s, n, r in counts.iter_rows()}
    problems = [
        (
            row,
            f"session {session!r} has {first[session][0]} event(s), at least {min_events} required"
            + (f" (first in data row {first[session][1]})" if row != first[session][1] else ""),
        )
        for row, session in short.select("row", "session").iter_rows()
    ]
    return good.filter(size >= min_events), problems


def _group_sessions(good: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
    """Sessions contiguous (first-appearance order) and time-ordered; moved events; sessions."""
    if good.height < 2:
        return good, 0, good.height
    same = pl.col("session") == pl.col("session").shift(1)
    stats = good.select(
        runs=(~same).fill_null(True).sum(),
        sessions=pl.col("session").n_unique(),
        backwards=(same & (pl.col("ts") < pl.col("ts").shift(1))).fill_null(False).any(),
    ).row(0, named=True)
    if stats["runs"] == stats["sessions"] and not stats["backwards"]:
        return good, 0, stats["sessions"]
    ordered = good.sort(pl.col("row").min().over("session"), pl.col("ts"), maintain_order=True)
    moved = int((ordered["row"] != good["row"]).sum())
    return ordered, moved, stats["sessions"]


# ------------------------------------------------------------------------------------------- ids


def _empty_id_map(key: str) -> pl.DataFrame:
    return pl.DataFrame(schema={key: pl.Int32, _ID_MAP_SOURCE: pl.Int64})


def encode_ids(
    tables: Sequence[LoadedTable],
) -> tuple[list[pl.DataFrame], pl.DataFrame, pl.DataFrame]:
    """Typed event tables from loaded ones, sharing one id mapping per column.

    Ids that are all integers in 0..2**31-1 (over all tables) are used as is and their map is empty;
    otherwise every id of that column gets a dense Int32 code in order of first appearance.
    """
    frames = [table.frame for table in tables]
    maps: dict[str, pl.DataFrame] = {}
    for key in ("session", "aid"):
        columns = [frame[key] for frame in frames]
        if all(c.dtype == pl.Int64 for c in columns) and all(
            c.is_empty() or (c.min() >= 0 and c.max() <= INT32_MAX)  # type: ignore[operator]
            for c in columns
        ):
            maps[key] = _empty_id_map(key)
            continue
        if any(c.dtype == pl.String for c in columns):
            columns = [c.cast(pl.String) for c in columns]
        vocabulary = pl.concat(columns).unique(maintain_order=True)
        if vocabulary.len() > INT32_MAX + 1:
            raise ValueError(f"{vocabulary.len()} distinct {key} ids do not fit Int32 codes")
        codes = pl.Series(key, range(vocabulary.len()), dtype=pl.Int32)
        maps[key] = pl.DataFrame({key: codes, _ID_MAP_SOURCE: vocabulary})
        _log_recoding(key, tables, vocabulary.len())
        frames = [
            frame.with_columns(
                pl.col(key).cast(vocabulary.dtype).replace_strict(vocabulary, codes, return_dtype=pl.Int32)
            )
            for frame in frames
        ]
    typed = [frame.select(pl.col(n).cast(d) for n, d in EVENT_SCHEMA.items()) for frame in frames]
    return typed, maps["session"], maps["aid"]


def _log_recoding(key: str, tables: Sequence[LoadedTable], distinct: int) -> None:
    """Name the first id (file, row, value) that made a column need codes."""
    example = ""
    for table in tables:
        column = table.frame[key]
        if column.dtype == pl.String:
            offending = table.frame.filter(
                pl.col(key).str.strip_chars().cast(pl.Int64, strict=False).is_null()
            )
        else:
            offending = table.frame.filter(~pl.col(key).is_between(0, INT32_MAX))
        if offending.height:
            row, value = offending.select("row", key).row(0)
            example = f" (e.g. {value!r} in {table.report.path}, data row {row}, column '{table.names[key]}')"
            break
    logger.warning(
        "%s ids are not all integers in 0..%d%s: mapped %d ids to dense Int32 codes; the mapping is "
        "%s_id_map (%s, %s)",
        key,
        INT32_MAX,
        example,
        distinct,
        key,
        key,
        _ID_MAP_SOURCE,
    )


def ingest_event_tables(
    train_path: str | Path,
    test_path: str | Path | None = None,
    fmt: TableFormat | None = None,
    *,
    min_events: int = 2,
    on_bad_line: OnBadLine = "raise",
    train_rejects_path: str | Path | None = None,
    test_rejects_path: str | Path | None = None,
    max_bad_share: float = 1.0,
) -> EventTables:
    """Train (sessions need ``min_events``) and optional test (>= 1 event) tables, typed.

    Test sessions must not reuse train session ids (as with the Kaggle files).
    """
    options = {"on_bad_line": on_bad_line, "max_bad_share": max_bad_share}
    train = load_event_table(
        train_path, fmt, min_events=min_events, rejects_path=train_rejects_path, **options
    )
    loaded = [train]
    if test_path is not None:
        test = load_event_table(test_path, fmt, min_events=1, rejects_path=test_rejects_path, **options)
        _check_disjoint_sessions(train, test)
        loaded.append(test)
    typed, session_map, aid_map = encode_ids(loaded)
    return EventTables(
        train=typed[0],
        test=typed[1] if len(typed) > 1 else pl.DataFrame(schema=EVENT_SCHEMA),
        session_id_map=session_map,
        aid_id_map=aid_map,
        train_report=train.report,
        test_report=loaded[1].report if len(loaded) > 1 else None,
    )


def _check_disjoint_sessions(train: LoadedTable, test: LoadedTable) -> None:
    left, right = train.frame.select("session"), test.frame.select("session", "row")
    if left["session"].dtype != right["session"].dtype:
        left = left.with_columns(pl.col("session").cast(pl.String))
        right = right.with_columns(pl.col("session").cast(pl.String))
    shared = right.join(left.unique(), on="session").sort("row")
    if shared.height:
        session, row = shared.row(0)
        raise BadInputError(
            test.report.path,
            row,
            DUPLICATE_SESSION,
            test.names["session"],
            f"session {session!r} also occurs in the train file {train.report.path} "
            f"({shared['session'].n_unique()} shared session ids)",
            unit="row",
        )


__all__ = [
    "DEFAULT_EVENT_TYPES",
    "ID_CODES",
    "TS_UNITS",
    "EventTables",
    "LoadedTable",
    "TableFormat",
    "encode_ids",
    "ingest_event_tables",
    "load_event_table",
]

"""Rules that an OTTO JSONL line and an event table must satisfy, with precise error messages.

Ingestion has a fast DuckDB path that only tells *whether* a file is clean; this module is the
authority that says *where* and *why* it is not. :func:`check_session_line` validates one raw line
exactly (types are checked strictly: ``"12"``, ``12.5`` and ``true`` are not integers, although a
permissive JSON reader would cast them) and returns either the parsed session or a
:class:`LineProblem` naming the field, e.g. ``events[3].ts`` (event indices are 0-based, as in the
JSON array).

Rules for a line (an OTTO session):

* a JSON object with exactly the keys ``session`` (integer, 0..2**31-1) and ``events`` (array);
* every event is an object with exactly ``aid`` (integer, 0..2**31-1), ``ts`` (integer Unix
  milliseconds in ``[1e11, 1e14)``; smaller values are reported as seconds) and ``type`` (one of
  ``clicks``, ``carts``, ``orders``);
* ``ts`` never decreases within the session (equal is fine);
* at least ``min_events`` events (2 for train files, 1 for the Kaggle test file);
* no blank lines, no duplicate keys, and (checked by the caller) no session id seen on an earlier line.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Final

import orjson
import polars as pl

from gnn_recsys.data.schema import (
    EVENT_SCHEMA,
    EVENT_TYPE_CODES,
    EVENT_TYPES,
    INT32_MAX,
    TS_MAX_MS,
    TS_MIN_MS,
)

# Reasons are stable keys: they name metrics (``ingest_bad_<reason>``) and the ``reason`` of rejects.
BLANK_LINE: Final = "blank_line"
MALFORMED_JSON: Final = "malformed_json"
MISSING_FIELD: Final = "missing_field"
UNEXPECTED_FIELD: Final = "unexpected_field"
DUPLICATE_KEY: Final = "duplicate_key"
WRONG_TYPE: Final = "wrong_type"
OUT_OF_RANGE: Final = "out_of_range"
UNKNOWN_EVENT_TYPE: Final = "unknown_event_type"
TS_NEGATIVE: Final = "ts_negative"
TS_NOT_MS: Final = "ts_not_ms"
TS_DECREASING: Final = "ts_decreasing"
TOO_FEW_EVENTS: Final = "too_few_events"
DUPLICATE_SESSION: Final = "duplicate_session"
#: Event tables only: a CSV row that cannot be split into fields (too many fields, broken quoting,
#: invalid UTF-8).
MALFORMED_ROW: Final = "malformed_row"
REASONS: tuple[str, ...] = (
    BLANK_LINE,
    MALFORMED_JSON,
    MISSING_FIELD,
    UNEXPECTED_FIELD,
    DUPLICATE_KEY,
    WRONG_TYPE,
    OUT_OF_RANGE,
    UNKNOWN_EVENT_TYPE,
    TS_NEGATIVE,
    TS_NOT_MS,
    TS_DECREASING,
    TOO_FEW_EVENTS,
    DUPLICATE_SESSION,
    MALFORMED_ROW,
)

_SESSION_KEYS = frozenset(("session", "events"))
_EVENT_KEYS = ("aid", "ts", "type")
_GET_AID, _GET_TS, _GET_TYPE = (itemgetter(key) for key in _EVENT_KEYS)
_TYPE_CODE = EVENT_TYPE_CODES.__getitem__
_INT_ONLY = {int}
_EVENT_KEY_COUNT = {len(_EVENT_KEYS)}
#: Double quotes on a canonical line: 2 keys, plus 3 keys and 1 string value per event.
QUOTES_PER_LINE, QUOTES_PER_EVENT = 4, 8


class BadInputError(ValueError):
    """Input that violates the format; the message names file, 1-based line, field and problem.

    For event tables (``unit="row"``) ``line`` is the 1-based *data row* (the header is not counted)
    and ``field`` is the file's own column name.
    """

    def __init__(
        self, path: str, line: int, reason: str, field: str | None, problem: str, *, unit: str = "line"
    ) -> None:
        self.path, self.line, self.reason, self.field, self.problem = path, line, reason, field, problem
        self.unit = unit
        message = (
            format_problem(path, line, field, problem)
            if unit == "line"
            else format_row_problem(path, line, field, problem)
        )
        super().__init__(message)


class TooManyBadLinesError(ValueError):
    """``on_bad_line="skip"`` rejected more than the allowed share of a file (or all of it)."""


@dataclass(frozen=True, slots=True)
class LineProblem:
    """Why one line is rejected: a reason key, the offending field (None: the line) and a message."""

    reason: str
    field: str | None
    problem: str


#: A valid line: session id, then aids, timestamps and type codes of its events.
ParsedSession = tuple[int, list[int], list[int], list[int]]


def format_problem(path: str, line: int, field: str | None, problem: str) -> str:
    """``train.jsonl:17: field 'events[3].ts': timestamp decreases (... < ...)``."""
    where = f"field '{field}': " if field is not None else ""
    return f"{path}:{line}: {where}{problem}"


def format_row_problem(path: str, row: int, column: str | None, problem: str) -> str:
    """``events.csv: data row 17 (1-based, header not counted): column 'Time': not a number 'x'``."""
    where = f"column '{column}': " if column is not None else ""
    return f"{path}: data row {row} (1-based, header not counted): {where}{problem}"


def check_bad_share(
    path: str,
    bad: int,
    total: int,
    max_bad_share: float,
    *,
    unit: str = "line",
    rejects_path: str | None = None,
) -> None:
    """Stop a skipping ingest that rejected more than ``max_bad_share`` of ``total``, or all of it.

    Skipping is meant for a few broken lines; a file that is mostly unreadable (another format, a
    wrong column mapping, an unsupported compression) must stop the run, not yield a near-empty table.
    """
    if not bad or not total:
        return
    share = bad / total
    if share <= max_bad_share and bad < total:
        return
    what = f"all {total} {unit}s" if bad == total else f"{bad} of {total} {unit}s ({share:.2%})"
    where = f" (listed in {rejects_path})" if rejects_path is not None else ""
    raise TooManyBadLinesError(
        f"{path}: {what} were rejected{where}, more than ingestion.max_bad_share={max_bad_share:g}. "
        "Is this the right file, format and column mapping? Raise ingestion.max_bad_share to accept "
        "that many."
    )


def _describe(value: object) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, bytes) else repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    kind = {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        float: "number",
        int: "integer",
    }.get(type(value), type(value).__name__ if value is not None else "null")
    return f"{kind} {text}" if value is not None else "null"


def _check_int(value: object, field: str, lo: int, hi: int) -> LineProblem | None:
    if type(value) is not int:
        return LineProblem(WRONG_TYPE, field, f"expected an integer, got {_describe(value)}")
    if not lo <= value <= hi:
        return LineProblem(OUT_OF_RANGE, field, f"{value} is outside {lo}..{hi}")
    return None


def _check_ts(value: object, field: str) -> LineProblem | None:
    if type(value) is not int:
        return LineProblem(WRONG_TYPE, field, f"expected an integer (Unix ms), got {_describe(value)}")
    if value < 0:
        return LineProblem(TS_NEGATIVE, field, f"negative timestamp {value}")
    if value < TS_MIN_MS:
        return LineProblem(
            TS_NOT_MS, field, f"timestamp {value} looks like seconds, expected Unix milliseconds"
        )
    if value >= TS_MAX_MS:
        return LineProblem(
            TS_NOT_MS, field, f"timestamp {value} is too large for Unix milliseconds (microseconds?)"
        )
    return None


def _first_event_problem(events: list[object]) -> LineProblem | None:
    """Walk the events in order and describe the first violation (slow path, bad lines only)."""
    prev_ts: int | None = None
    for i, event in enumerate(events):
        where = f"events[{i}]"
        if type(event) is not dict:
            return LineProblem(WRONG_TYPE, where, f"expected an object, got {_describe(event)}")
        for key in _EVENT_KEYS:
            if key not in event:
                return LineProblem(MISSING_FIELD, f"{where}.{key}", "missing")
        problem = _check_int(event["aid"], f"{where}.aid", 0, INT32_MAX) or _check_ts(
            event["ts"], f"{where}.ts"
        )
        if problem:
            return problem
        ts = event["ts"]
        if prev_ts is not None and ts < prev_ts:
            return LineProblem(TS_DECREASING, f"{where}.ts", f"timestamp decreases ({ts} < {prev_ts})")
        prev_ts = ts
        kind = event["type"]
        if type(kind) is not str:
            return LineProblem(WRONG_TYPE, f"{where}.type", f"expected a string, got {_describe(kind)}")
        if kind not in EVENT_TYPE_CODES:
            return LineProblem(
                UNKNOWN_EVENT_TYPE,
                f"{where}.type",
                f"unknown event type {kind!r}, expected one of {EVENT_TYPES}",
            )
        if len(event) != len(_EVENT_KEYS):
            extra = next(k for k in event if k not in _EVENT_KEYS)
            return LineProblem(UNEXPECTED_FIELD, f"{where}.{extra}", "unexpected field")
    return None


def check_session_line(raw: bytes, min_events: int) -> ParsedSession | LineProblem:
    """Parse and validate one JSONL line (without its duplicate-session check)."""
    text = raw.strip()
    if not text:
        return LineProblem(BLANK_LINE, None, "blank line")
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return LineProblem(MALFORMED_JSON, None, f"malformed JSON ({exc})")
    if type(obj) is not dict:
        return LineProblem(WRONG_TYPE, None, f"expected a JSON object per line, got {_describe(obj)}")
    for key in ("session", "events"):
        if key not in obj:
            return LineProblem(MISSING_FIELD, key, "missing")
    session = obj["session"]
    problem = _check_int(session, "session", 0, INT32_MAX)
    if problem:
        return problem
    events = obj["events"]
    if type(events) is not list:
        return LineProblem(WRONG_TYPE, "events", f"expected an array, got {_describe(events)}")
    if len(obj) != len(_SESSION_KEYS):
        extra = next(k for k in obj if k not in _SESSION_KEYS)
        return LineProblem(UNEXPECTED_FIELD, extra, "unexpected field")

    # Fast acceptance with C-level builtins; any doubt goes to the precise per-event walk.
    try:
        aids = list(map(_GET_AID, events))
        tss = list(map(_GET_TS, events))
        codes = list(map(_TYPE_CODE, map(_GET_TYPE, events)))
        clean = not events or (
            set(map(type, aids)) == _INT_ONLY
            and set(map(type, tss)) == _INT_ONLY
            and set(map(len, events)) == _EVENT_KEY_COUNT
            and min(aids) >= 0
            and max(aids) <= INT32_MAX
            and min(tss) >= TS_MIN_MS
            and max(tss) < TS_MAX_MS
            and tss == sorted(tss)
        )
    except (KeyError, TypeError):
        clean = False
    if not clean:
        problem = _first_event_problem(events)
        if problem:
            return problem
    if len(events) < min_events:
        return LineProblem(
            TOO_FEW_EVENTS, "events", f"session has {len(events)} event(s), at least {min_events} required"
        )
    # orjson keeps the last of duplicate keys; a canonical line has a fixed number of quotes.
    if text.count(b'"') != QUOTES_PER_LINE + QUOTES_PER_EVENT * len(events):
        return LineProblem(DUPLICATE_KEY, None, "duplicate key in a JSON object")
    return session, aids, tss, codes


def check_event_table(events: pl.DataFrame, name: str = "events") -> None:
    """Raise ``ValueError`` unless ``events`` follows the event-table contract.

    Checks dtypes, nulls, type codes, the Unix-ms range, contiguous sessions and non-decreasing
    ``ts`` within each session. Vectorised; meant for frames built in memory (generators, tests).
    """
    if events.schema != EVENT_SCHEMA:
        raise ValueError(f"{name}: schema {dict(events.schema)} != contract {dict(EVENT_SCHEMA)}")
    if events.height == 0:
        return
    nulls = {col: n for col, n in zip(events.columns, events.null_count().row(0), strict=True) if n}
    if nulls:
        raise ValueError(f"{name}: null values {nulls}")
    prev_session = pl.col("session").shift(1)
    bad = events.with_row_index("row").filter(
        ~pl.col("type").is_between(0, len(EVENT_TYPES) - 1)
        | (pl.col("aid") < 0)
        | (pl.col("session") < 0)
        | ~pl.col("ts").is_between(TS_MIN_MS, TS_MAX_MS - 1)
        | ((pl.col("session") == prev_session) & (pl.col("ts") < pl.col("ts").shift(1)))
    )
    if bad.height:
        raise ValueError(f"{name}: {bad.height} invalid row(s), first: {bad.row(0, named=True)}")
    runs = events.select((pl.col("session") != prev_session).fill_null(True).sum()).item()
    distinct = events["session"].n_unique()
    if runs != distinct:
        raise ValueError(f"{name}: events of a session are not contiguous ({runs} runs, {distinct} sessions)")

"""OTTO JSONL -> typed event-table parquet, fast on clean files and precise on bad ones.

Why two paths: the OTTO train file is 11.3 GB, so the normal case must stream at DuckDB speed with
bounded memory, yet a bad line must never slip through and must be reported by file, line and field.

* **Fast path** (DuckDB): ``read_json`` with explicit column types, ``UNNEST`` and ``COPY ... TO
  parquet`` (2 threads, a memory limit, insertion order preserved, so sessions stay in file order and
  events in their order). DuckDB's reader is permissive (it casts ``"12"``, ``12.5`` and ``true`` to
  integers, ignores unknown keys and skips blank lines), so the output is then *verified*:

  - the parquet row-group statistics: no nulls (missing fields, unknown event types), id and
    Unix-ms ranges;
  - a vectorised NumPy pass over the written ``session``, ``ts`` and ``type`` columns (row-group
    batches; the row groups in two contiguous slices scanned side by side, then joined): ``ts``
    non-decreasing within each session, one run of rows per line (so no empty session, no blank
    line, no adjacent duplicate), at least ``min_events`` per session, no repeated session id;
  - byte counts of the raw file taken while DuckDB runs: a canonical OTTO file has exactly
    ``4 * sessions + 8 * events`` double quotes (any string-typed number, extra or duplicate key adds
    some), ``3 * sessions + events + orders`` letters ``e`` (a ``1e3`` exponent adds one),
    ``3 * events`` commas (DuckDB accepts trailing commas, strict JSON does not: one adds a comma) and
    no ``.``, ``E``, ``u`` or ``f`` at all (floats, ``true``, ``false``, ``null``).

* **Precise path** (Python + orjson, :mod:`gnn_recsys.data.validation`): taken only when DuckDB fails or
  the verification finds anything. It re-reads the file line by line, raises :class:`BadInputError`
  at the first bad line (``on_bad_line="raise"``) or skips and counts bad lines, writes them to
  ``rejects_path`` and logs a warning (``on_bad_line="skip"``). It is the authority: a file that only
  *looks* unusual to the byte counts (e.g. ``\\u`` escapes) is accepted by it.

With ``on_bad_line="skip"``, a file of which more than ``max_bad_share`` of the lines (or every
line) is rejected stops with :class:`TooManyBadLinesError`: skipping is for a few broken lines, not
for a file in another format.

gzip-compressed input (recognised by its magic bytes, whatever the name) is read transparently on
both paths; other compressions (zstd, bzip2, xz, zip) stop with an error that names them.

The output is written to a temporary file next to ``dest_parquet`` and renamed on success, so a
failed ingest never leaves a partial table behind.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import logging
import os
import tempfile
import threading
import time
from array import array
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import duckdb
import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from gnn_recsys.data.schema import EVENT_TYPES, INT32_MAX, ORDER, TS_MAX_MS, TS_MIN_MS
from gnn_recsys.data.validation import (
    DUPLICATE_SESSION,
    QUOTES_PER_EVENT,
    QUOTES_PER_LINE,
    BadInputError,
    LineProblem,
    TooManyBadLinesError,
    check_bad_share,
    check_session_line,
    format_problem,
)

logger = logging.getLogger(__name__)

OnBadLine = Literal["raise", "skip"]
_ARROW_SCHEMA = pa.schema(
    [("session", pa.int32()), ("aid", pa.int32()), ("ts", pa.int64()), ("type", pa.int8())]
)
_READ_BLOCK = 1 << 22
_PARQUET_COMPRESSION = "zstd"
# Bytes that never occur in a canonical OTTO file (see module docstring).
_FORBIDDEN_BYTES = b".Euf"
#: Commas on a canonical line: two inside each event object and one after each but the last, plus
#: the one after the session id.
COMMAS_PER_EVENT = 3
# Magic bytes of compressed files: gzip is read transparently, the others are named in an error.
_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"PK\x03\x04": "zip",
}


def compression_of(path: str | Path) -> str | None:
    """``"gzip"``, ``"zstd"``, ``"bzip2"``, ``"xz"`` or ``"zip"`` from the file's magic bytes; else None."""
    with Path(path).open("rb") as fh:
        head = fh.read(8)
    return next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)


def open_maybe_gzip(path: Path, compression: str | None) -> BinaryIO:
    """The file's (decompressed) bytes: gzip is unpacked on the fly, anything else read as is."""
    if compression == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def check_compression(path: Path) -> str | None:
    """The compression to read ``path`` with (None or "gzip"); raises for the unsupported ones."""
    compression = compression_of(path)
    if compression not in (None, "gzip"):
        raise ValueError(
            f"{path}: the file is {compression}-compressed, which ingestion does not read; "
            "decompress it (or recompress it with gzip, which is read transparently)"
        )
    return compression


@dataclass
class IngestReport:
    """What an ingest read, wrote and rejected; ``as_dict()`` gives flat MLflow-ready metrics."""

    path: str
    dest: str
    engine: str  # "duckdb" (fast path) or "python" (precise path)
    bytes: int
    lines: int
    sessions: int
    events: int
    events_by_type: dict[str, int]
    bad_lines: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Documented repairs, counted (event tables: ``reordered_events``); metrics ``repair_<name>``.
    repairs: dict[str, int] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / max(self.seconds, 1e-9)

    @property
    def bad_line_count(self) -> int:
        return sum(self.bad_lines.values())

    def as_dict(self, prefix: str = "ingest_") -> dict[str, float]:
        """Numeric fields as ``{prefix}name: float`` (``events_clicks``, ``bad_<reason>``, ``mb_per_s``)."""
        raw = asdict(self)
        out = {f"{prefix}{k}": float(v) for k, v in raw.items() if isinstance(v, int | float)}
        out.update({f"{prefix}events_{k}": float(v) for k, v in self.events_by_type.items()})
        out.update({f"{prefix}bad_{k}": float(v) for k, v in self.bad_lines.items()})
        out.update({f"{prefix}repair_{k}": float(v) for k, v in self.repairs.items()})
        out[f"{prefix}bad_lines"] = float(self.bad_line_count)
        out[f"{prefix}mb_per_s"] = self.mb_per_s
        return out


def ingest_jsonl(
    path: str | Path,
    dest_parquet: str | Path,
    *,
    min_events: int = 2,
    on_bad_line: OnBadLine = "raise",
    rejects_path: str | Path | None = None,
    max_bad_share: float = 1.0,
    progress: bool = True,
    threads: int = 2,
    memory_limit: str = "512MB",
) -> IngestReport:
    """Convert an OTTO JSONL file into an event-table parquet (see the module docstring).

    ``min_events``: 2 for train files, 1 for the Kaggle test file (1-event sessions are legal there).
    ``on_bad_line="raise"`` raises :class:`BadInputError` at the first bad line; ``"skip"`` drops bad
    lines (a repeated session id: the later lines), counts them by reason in the report, logs a
    warning and writes them to ``rejects_path`` (JSONL: ``line``, ``reason``, ``field``, ``message``,
    ``text``) when given; it raises :class:`TooManyBadLinesError` when more than ``max_bad_share`` of
    the lines, or every line, was rejected.
    """
    if min_events < 1:
        raise ValueError("min_events must be >= 1 (an empty session is never valid)")
    if on_bad_line not in ("raise", "skip"):
        raise ValueError(f"on_bad_line must be 'raise' or 'skip', got {on_bad_line!r}")
    if not 0.0 <= max_bad_share <= 1.0:
        raise ValueError(f"max_bad_share must be within 0..1, got {max_bad_share!r}")
    src, dest = Path(path), Path(dest_parquet)
    if not src.is_file():
        raise FileNotFoundError(src)
    compression = check_compression(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = src.stat().st_size
    began = time.perf_counter()
    logger.info("ingesting %s (%.1f MB) -> %s", src, size / 1e6, dest)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        report = _fast_path(
            src,
            tmp,
            size=size,
            compression=compression,
            min_events=min_events,
            progress=progress,
            threads=threads,
            memory_limit=memory_limit,
        )
        if report is None:
            report = _precise_path(
                src,
                tmp,
                size=size,
                compression=compression,
                min_events=min_events,
                on_bad_line=on_bad_line,
                rejects_path=rejects_path,
                progress=progress,
            )
            check_bad_share(
                str(src),
                report.bad_line_count,
                report.lines,
                max_bad_share,
                rejects_path=str(rejects_path) if rejects_path is not None else None,
            )
        elif rejects_path is not None:
            Path(rejects_path).write_bytes(b"")  # a clean file has no rejects; never leave stale ones
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    report.dest = str(dest)
    report.seconds = time.perf_counter() - began
    logger.info(
        "ingested %s: %d sessions, %d events in %.1f s (%.0f MB/s, %s)",
        src.name,
        report.sessions,
        report.events,
        report.seconds,
        report.mb_per_s,
        report.engine,
    )
    return report


def read_events(path: str | Path, **kwargs: object) -> pl.DataFrame:
    """Ingest an OTTO JSONL file into memory (keyword arguments as for :func:`ingest_jsonl`)."""
    kwargs.setdefault("progress", False)
    with tempfile.TemporaryDirectory(prefix="otto_ingest_") as tmp:
        dest = Path(tmp) / "events.parquet"
        ingest_jsonl(path, dest, **kwargs)  # type: ignore[arg-type]
        return pl.read_parquet(dest)


# ---------------------------------------------------------------------------------------- fast path


def _sql_str(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _count_bytes(path: Path, compression: str | None, stop: threading.Event) -> dict[str, int]:
    """Line count and the byte counts behind the canonical-format check (NumPy and zlib release the
    GIL); a gzip file is counted decompressed."""
    counts = dict.fromkeys(("newlines", "quotes", "e", "commas", "forbidden"), 0)
    last = b""
    with open_maybe_gzip(path, compression) as fh:
        while not stop.is_set() and (block := fh.read(_READ_BLOCK)):
            arr = np.frombuffer(block, dtype=np.uint8)
            counts["newlines"] += int(np.count_nonzero(arr == ord("\n")))
            counts["quotes"] += int(np.count_nonzero(arr == ord('"')))
            counts["e"] += int(np.count_nonzero(arr == ord("e")))
            counts["commas"] += int(np.count_nonzero(arr == ord(",")))
            for byte in _FORBIDDEN_BYTES:
                counts["forbidden"] += int(np.count_nonzero(arr == byte))
            last = block[-1:]
    counts["lines"] = counts["newlines"] + (1 if last not in (b"", b"\n") else 0)
    return dict(counts)


def _fast_path(
    src: Path,
    tmp: Path,
    *,
    size: int,
    compression: str | None,
    min_events: int,
    progress: bool,
    threads: int,
    memory_limit: str,
) -> IngestReport | None:
    """DuckDB conversion plus verification; ``None`` when the precise path must take over."""
    con = duckdb.connect()
    spill = tempfile.TemporaryDirectory(prefix="duckdb_spill_")  # never spill into the working directory
    try:
        con.execute(f"SET temp_directory = {_sql_str(spill.name)}")
        con.execute(f"SET threads = {int(threads)}")
        con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET enable_progress_bar = true")
        con.execute("SET enable_progress_bar_print = false")
        type_case = " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(EVENT_TYPES))
        sql = f"""
            COPY (
                SELECT session::INTEGER AS session, e.aid::INTEGER AS aid, e.ts::BIGINT AS ts,
                       (CASE e.type {type_case} END)::TINYINT AS type
                FROM (
                    SELECT session, UNNEST(events) AS e
                    FROM read_json({_sql_str(src)}, format = 'newline_delimited', auto_detect = false,
                        compression = {_sql_str(compression or "none")},
                        columns = {{'session': 'BIGINT',
                                    'events': 'STRUCT(aid BIGINT, ts BIGINT, type VARCHAR)[]'}})
                )
            ) TO {_sql_str(tmp)} (FORMAT parquet, COMPRESSION {_PARQUET_COMPRESSION})
        """
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=1) as pool:
            counting = pool.submit(_count_bytes, src, compression, stop)
            try:
                _run_with_progress(con, sql, src.name, size, progress)
            except duckdb.Error as exc:
                stop.set()
                logger.info(
                    "fast path stopped (%s); locating the problem line by line", str(exc).splitlines()[0]
                )
                return None
            byte_counts = counting.result()
    finally:
        con.close()
        spill.cleanup()
    verified = _verify_output(tmp, byte_counts, min_events, workers=threads)
    if verified is None:
        logger.info("fast-path output failed verification; locating the problem line by line")
        return None
    sessions, events, per_type = verified
    return IngestReport(
        path=str(src),
        dest="",
        engine="duckdb",
        bytes=size,
        lines=byte_counts["lines"],
        sessions=sessions,
        events=events,
        events_by_type=dict(zip(EVENT_TYPES, per_type, strict=True)),
    )


def _run_with_progress(
    con: duckdb.DuckDBPyConnection, sql: str, name: str, size: int, progress: bool
) -> None:
    """Execute ``sql``; a side thread turns DuckDB's query progress into a byte progress bar."""
    if not progress:
        con.execute(sql)
        return
    done = threading.Event()
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"ingest {name}", leave=False)

    def poll() -> None:
        while not done.wait(0.5):
            pct = con.query_progress()
            if pct >= 0:
                bar.update(max(0, int(size * pct / 100) - bar.n))

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        con.execute(sql)
        bar.update(size - bar.n)
    finally:
        done.set()
        watcher.join()
        bar.close()


def _column_stats_ok(file: pq.ParquetFile) -> bool:
    """Nulls and value ranges from the parquet row-group statistics (no data is decoded)."""
    bounds = {
        "session": (0, INT32_MAX),
        "aid": (0, INT32_MAX),
        "ts": (TS_MIN_MS, TS_MAX_MS - 1),
        "type": (0, 2),
    }
    meta = file.metadata
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for col in range(row_group.num_columns):
            chunk = row_group.column(col)
            stats = chunk.statistics
            lo, hi = bounds[chunk.path_in_schema]
            if stats is None or not stats.has_min_max or not stats.has_null_count:
                return row_group.num_rows == 0
            if stats.null_count or stats.min < lo or stats.max > hi:
                return False
    return True


@dataclass
class _RunScan:
    """Runs of equal ``session`` in a slice of row groups (a run = one input line)."""

    rows: int
    starts: np.ndarray  # first row of each run, relative to the slice
    sessions: np.ndarray  # the session id of each run
    per_type: np.ndarray
    first_ts: int
    last_session: int
    last_ts: int


def _scan_row_groups(parquet: Path, row_groups: list[int]) -> _RunScan | None:
    """One worker's share of the verification; ``None`` when ``ts`` goes back inside a run. The
    slice's first row always starts a run (the caller joins slices)."""
    file = pq.ParquetFile(parquet, pre_buffer=False)  # pre-buffering holds whole row groups
    per_type = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    run_starts: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    run_sessions: list[np.ndarray] = [np.empty(0, dtype=np.int32)]
    offset, first_ts = 0, 0
    prev_session: int | None = None
    prev_ts = 0
    batches = file.iter_batches(batch_size=1 << 20, row_groups=row_groups, columns=["session", "ts", "type"])
    for batch in batches:
        session, ts, kind = (column.to_numpy() for column in batch.columns)
        if not session.size:
            continue
        new_run = np.empty(session.size, dtype=bool)
        new_run[0] = prev_session is None or session[0] != prev_session
        np.not_equal(session[1:], session[:-1], out=new_run[1:])
        before = np.empty_like(ts)
        before[0] = prev_ts
        before[1:] = ts[:-1]
        if np.any(~new_run & (ts < before)):
            return None
        if prev_session is None:
            first_ts = int(ts[0])
        starts = np.flatnonzero(new_run)
        run_starts.append(starts + offset)
        run_sessions.append(session[starts])
        per_type += np.bincount(kind, minlength=len(EVENT_TYPES))[: len(EVENT_TYPES)]
        offset += session.size
        prev_session, prev_ts = int(session[-1]), int(ts[-1])
    return _RunScan(
        rows=offset,
        starts=np.concatenate(run_starts),
        sessions=np.concatenate(run_sessions),
        per_type=per_type,
        first_ts=first_ts,
        last_session=-1 if prev_session is None else prev_session,
        last_ts=prev_ts,
    )


def _verify_output(
    parquet: Path, byte_counts: dict[str, int], min_events: int, workers: int = 2
) -> tuple[int, int, list[int]] | None:
    """Check the fast-path table against the rules; ``(sessions, events, per-type)`` or ``None``.

    The row groups are scanned in ``workers`` contiguous slices side by side (parquet decoding and
    NumPy release the GIL; this pass runs after DuckDB, so alone it would leave a core idle), then
    joined: a slice whose first session continues the previous slice's last one is the same run.
    """
    file = pq.ParquetFile(parquet, pre_buffer=False)
    if not _column_stats_ok(file):
        return None  # missing fields, nulls, unknown event types or out-of-range values
    groups = np.arange(file.metadata.num_row_groups)
    slices = [[int(g) for g in part] for part in np.array_split(groups, max(1, workers)) if part.size]
    with ThreadPoolExecutor(max_workers=max(1, len(slices))) as pool:
        scans = list(pool.map(lambda part: _scan_row_groups(parquet, part), slices))
    run_starts: list[np.ndarray] = []
    run_sessions: list[np.ndarray] = []
    per_type = np.zeros(len(EVENT_TYPES), dtype=np.int64)
    offset = 0
    previous: _RunScan | None = None
    if any(scan is None for scan in scans):
        return None  # ts decreases inside a run
    for scan in scans:
        if not scan.rows:
            continue
        starts, sessions = scan.starts, scan.sessions
        if previous is not None and sessions[0] == previous.last_session:
            if scan.first_ts < previous.last_ts:
                return None  # ts decreases where a run crosses into this slice
            starts, sessions = starts[1:], sessions[1:]
        run_starts.append(starts + offset)
        run_sessions.append(sessions)
        per_type += scan.per_type
        offset += scan.rows
        previous = scan
    events = offset
    starts_all = np.concatenate(run_starts) if run_starts else np.empty(0, dtype=np.int64)
    sessions_all = np.concatenate(run_sessions) if run_sessions else np.empty(0, dtype=np.int32)
    sessions = int(starts_all.size)
    if sessions != byte_counts["lines"]:
        return None  # blank lines, empty sessions or a session id repeated on the next line
    if sessions and int(np.diff(np.append(starts_all, events)).min()) < min_events:
        return None
    ascending = sessions < 2 or bool(np.all(sessions_all[1:] > sessions_all[:-1]))
    if not ascending and np.unique(sessions_all).size != sessions:
        return None  # a session id repeated on a later line
    canonical = (
        byte_counts["quotes"] == QUOTES_PER_LINE * sessions + QUOTES_PER_EVENT * events
        and byte_counts["e"] == 3 * sessions + events + int(per_type[ORDER])
        and byte_counts["commas"] == COMMAS_PER_EVENT * events
        and byte_counts["forbidden"] == 0
    )
    if not canonical:
        # string-typed numbers, floats, booleans, nulls, unknown/duplicate keys or trailing commas
        return None
    return sessions, events, [int(n) for n in per_type]


# ------------------------------------------------------------------------------------- precise path


class _ParquetSink:
    """Buffers parsed sessions in typed arrays and writes them as parquet row groups."""

    def __init__(self, path: Path, flush_events: int = 1 << 21) -> None:
        self.writer = pq.ParquetWriter(path, _ARROW_SCHEMA, compression=_PARQUET_COMPRESSION)
        self.flush_events = flush_events
        self.events = 0
        self.per_type = np.zeros(len(EVENT_TYPES), dtype=np.int64)
        self._reset()

    def _reset(self) -> None:
        self.session, self.aid, self.ts, self.kind = array("i"), array("i"), array("q"), array("b")

    def add(self, session: int, aids: list[int], tss: list[int], codes: list[int]) -> None:
        self.session.extend([session] * len(aids))
        self.aid.extend(aids)
        self.ts.extend(tss)
        self.kind.extend(codes)
        if len(self.aid) >= self.flush_events:
            self.flush()

    def flush(self) -> None:
        if not self.aid:
            return
        columns = [
            np.frombuffer(buf, dtype=dtype)
            for buf, dtype in zip(
                (self.session, self.aid, self.ts, self.kind),
                (np.int32, np.int32, np.int64, np.int8),
                strict=True,
            )
        ]
        self.writer.write_table(pa.Table.from_arrays(columns, schema=_ARROW_SCHEMA))
        self.events += columns[0].size
        self.per_type += np.bincount(columns[3], minlength=len(EVENT_TYPES))[: len(EVENT_TYPES)]
        self._reset()

    def close(self) -> None:
        self.flush()
        self.writer.close()


class _SeenSessions:
    """Session ids accepted so far: a bitmap for the membership test (1 bit per id, ~2 MB for OTTO)
    and the accepted ids/lines in order, searched only to name the first line of a duplicate."""

    def __init__(self) -> None:
        self.bits = bytearray()
        self.sessions = array("i")
        self.lines = array("q")

    def __len__(self) -> int:
        return len(self.sessions)

    def __contains__(self, session: int) -> bool:
        byte = session >> 3
        return byte < len(self.bits) and bool(self.bits[byte] >> (session & 7) & 1)

    def add(self, session: int, line: int) -> None:
        byte = session >> 3
        if byte >= len(self.bits):
            self.bits.extend(bytes(max(byte + 1 - len(self.bits), len(self.bits))))
        self.bits[byte] |= 1 << (session & 7)
        self.sessions.append(session)
        self.lines.append(line)

    def first_line(self, session: int) -> int:
        ids = np.frombuffer(self.sessions, dtype=np.int32)
        return int(self.lines[int(np.flatnonzero(ids == session)[0])])


def _precise_path(
    src: Path,
    tmp: Path,
    *,
    size: int,
    compression: str | None,
    min_events: int,
    on_bad_line: OnBadLine,
    rejects_path: str | Path | None,
    progress: bool,
) -> IngestReport:
    """Line-by-line validation with orjson: exact errors, skipping and rejects."""
    bad: Counter[str] = Counter()
    seen = _SeenSessions()
    n_lines = 0
    pending_bytes = 0
    with contextlib.ExitStack() as stack:
        sink = _ParquetSink(tmp)
        stack.callback(sink.close)
        rejects = None
        if rejects_path is not None and on_bad_line == "skip":
            rejects = stack.enter_context(Path(rejects_path).open("wb"))
        bar = stack.enter_context(
            tqdm(
                total=size if compression is None else None,  # decompressed size is unknown
                unit="B",
                unit_scale=True,
                desc=f"validate {src.name}",
                leave=False,
                disable=not progress,
            )
        )
        fh = stack.enter_context(open_maybe_gzip(src, compression))
        for n_lines, raw in enumerate(fh, start=1):  # noqa: B007 (n_lines is used after the loop)
            pending_bytes += len(raw)
            if pending_bytes >= _READ_BLOCK:
                bar.update(pending_bytes)
                pending_bytes = 0
            # a UTF-8 byte-order mark opening the file is legal (DuckDB accepts it too)
            text = raw[len(codecs.BOM_UTF8) :] if n_lines == 1 and raw.startswith(codecs.BOM_UTF8) else raw
            parsed = check_session_line(text, min_events)
            if not isinstance(parsed, LineProblem) and parsed[0] in seen:
                parsed = LineProblem(
                    DUPLICATE_SESSION,
                    "session",
                    f"duplicate session id {parsed[0]} (first on line {seen.first_line(parsed[0])})",
                )
            if isinstance(parsed, LineProblem):
                if on_bad_line == "raise":
                    raise BadInputError(str(src), n_lines, parsed.reason, parsed.field, parsed.problem)
                bad[parsed.reason] += 1
                if rejects is not None:
                    record = {
                        "line": n_lines,
                        "reason": parsed.reason,
                        "field": parsed.field,
                        "message": format_problem(str(src), n_lines, parsed.field, parsed.problem),
                        "text": raw.rstrip(b"\r\n").decode("utf-8", errors="replace"),
                    }
                    rejects.write(orjson.dumps(record) + b"\n")
                continue
            seen.add(parsed[0], n_lines)
            sink.add(*parsed)
        bar.update(pending_bytes)
    if bad:
        logger.warning(
            "%s: skipped %d bad line(s) of %d: %s%s",
            src,
            sum(bad.values()),
            n_lines,
            dict(bad),
            f"; rejected lines written to {rejects_path}" if rejects_path is not None else "",
        )
    return IngestReport(
        path=str(src),
        dest="",
        engine="python",
        bytes=size,
        lines=n_lines,
        sessions=len(seen),
        events=sink.events,
        events_by_type=dict(zip(EVENT_TYPES, (int(n) for n in sink.per_type), strict=True)),
        bad_lines=dict(bad),
    )


__all__ = [
    "BadInputError",
    "IngestReport",
    "TooManyBadLinesError",
    "compression_of",
    "ingest_jsonl",
    "read_events",
]

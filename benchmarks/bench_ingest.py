"""Throughput and memory of OTTO JSONL ingestion, and of the synthetic generator that feeds it.

    .venv/bin/python benchmarks/bench_ingest.py                      # ~530 MB synthetic file in a temp dir
    .venv/bin/python benchmarks/bench_ingest.py --target-mb 1000 --baseline-mb 100
    .venv/bin/python benchmarks/bench_ingest.py --path /data/otto/train.jsonl   # a real OTTO file
    .venv/bin/python benchmarks/bench_ingest.py --path /data/otto/train.jsonl --cold   # + from disk
    .venv/bin/python benchmarks/bench_ingest.py --table-only --table-rows 5000000   # event tables only
    .venv/bin/python benchmarks/bench_ingest.py --table-only --table-path clicks.tsv \
        --table-format '{"session": "SessionId", "aid": "ItemId", "ts": "Time", "ts_unit": "s"}'

Steps (each in its own subprocess, so every peak RSS is that step's own, DuckDB threads included):

1. ``generate``: :func:`write_synthetic_otto` writes the file; prints events/s and the time that rate
   implies for full OTTO scale (12.9M train + 1.67M test sessions, ~224M events);
2. ``ingest``: :func:`ingest_jsonl` on the whole file (DuckDB fast path + verification); with
   ``--cold`` first once with the file's pages evicted from the OS page cache (``posix_fadvise``
   ``DONTNEED``, no root needed), so it is read from disk, then again from the cache;
3. on a slice of the first ``--baseline-mb`` MB: ``ingest`` again, the precise path alone (what a
   file with a bad line costs), and two baselines writing the same parquet: polars ``read_ndjson`` +
   ``explode``, and an orjson line loop into typed arrays;
4. event tables: a YOOCHOOSE-like TSV (``SessionId, ItemId, Time`` in fractional seconds,
   ``EventType`` names, rows in time order so sessions interleave and must be grouped) of
   ``--table-rows`` generated events, or ``--table-path``: :func:`ingest_event_tables` against a plain
   typed ``pl.read_csv`` of the same columns (the least any table reader must do).

Ratios compare MB/s (rows/s for tables) measured in this same run on this machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from gnn_recsys.data import ingest as ingest_module
from gnn_recsys.data.events_table import TableFormat, ingest_event_tables
from gnn_recsys.data.ingest import ingest_jsonl
from gnn_recsys.data.schema import EVENT_SCHEMA, EVENT_TYPE_CODES, EVENT_TYPES
from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events, write_synthetic_otto

OTTO_TRAIN_SESSIONS, OTTO_TEST_SESSIONS = 12_899_779, 1_671_803
OTTO_EVENTS = 216_716_096 + 6_928_123  # train + test events of the Kaggle files
OTTO_TRAIN_BYTES = 11_300_000_000


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cpu_s() -> float:
    """CPU seconds of this process, all threads (less sensitive than wall time to a busy machine)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------------------ child steps


def step_generate(path: Path, target_mb: float, num_items: int) -> dict[str, float]:
    pilot = SyntheticConfig(num_items=num_items, num_train_sessions=20_000, num_test_sessions=0, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        pilot_counts = write_synthetic_otto(Path(tmp) / "a.jsonl", Path(tmp) / "b.jsonl", pilot)
    bytes_per_session = pilot_counts["train_bytes"] / pilot.num_train_sessions
    sessions = math.ceil(target_mb * 1e6 / bytes_per_session * 1.02)
    config = SyntheticConfig(
        num_items=num_items, num_train_sessions=sessions, num_test_sessions=0, seed=0, chunk_sessions=200_000
    )
    cpu = _cpu_s()
    counts = write_synthetic_otto(path, path.with_name("test_unused.jsonl"), config)
    return {**counts, "cpu_s": _cpu_s() - cpu, "peak_rss_mb": _peak_rss_mb()}


def step_ingest(path: Path, precise: bool) -> dict[str, float]:
    cpu = _cpu_s()
    if precise:
        ingest_module._fast_path = lambda *args, **kwargs: None  # type: ignore[assignment]  # noqa: SLF001
    with tempfile.TemporaryDirectory() as tmp:
        report = ingest_jsonl(path, Path(tmp) / "events.parquet", progress=False)
    return {
        "seconds": report.seconds,
        "events": report.events,
        "bytes": report.bytes,
        "engine": report.engine,
        "cpu_s": _cpu_s() - cpu,
        "peak_rss_mb": _peak_rss_mb(),
    }  # type: ignore[dict-item]


def step_polars(path: Path) -> dict[str, float]:
    cpu = _cpu_s()
    began = time.perf_counter()
    raw = pl.read_ndjson(
        path,
        schema={
            "session": pl.Int32,
            "events": pl.List(pl.Struct({"aid": pl.Int32, "ts": pl.Int64, "type": pl.Utf8})),
        },
    )
    events = (
        raw.explode("events")
        .unnest("events")
        .with_columns(pl.col("type").replace_strict(EVENT_TYPE_CODES, return_dtype=pl.Int8))
        .select(EVENT_SCHEMA.names())
    )
    with tempfile.TemporaryDirectory() as tmp:
        events.write_parquet(Path(tmp) / "events.parquet", compression="zstd")
    return {
        "seconds": time.perf_counter() - began,
        "events": events.height,
        "bytes": path.stat().st_size,
        "cpu_s": _cpu_s() - cpu,
        "peak_rss_mb": _peak_rss_mb(),
    }


def step_orjson(path: Path) -> dict[str, float]:
    cpu = _cpu_s()
    began = time.perf_counter()
    session, aid, ts, kind = array("i"), array("i"), array("q"), array("b")
    codes = {name: code for code, name in enumerate(EVENT_TYPES)}
    with path.open("rb") as fh:
        for line in fh:
            obj = orjson.loads(line)
            events = obj["events"]
            session.extend([obj["session"]] * len(events))
            for event in events:
                aid.append(event["aid"])
                ts.append(event["ts"])
                kind.append(codes[event["type"]])
    table = pa.table(
        {
            "session": np.frombuffer(session, np.int32),
            "aid": np.frombuffer(aid, np.int32),
            "ts": np.frombuffer(ts, np.int64),
            "type": np.frombuffer(kind, np.int8),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(table, Path(tmp) / "events.parquet", compression="zstd")
    return {
        "seconds": time.perf_counter() - began,
        "events": table.num_rows,
        "bytes": path.stat().st_size,
        "cpu_s": _cpu_s() - cpu,
        "peak_rss_mb": _peak_rss_mb(),
    }


TABLE_TYPES = {"view": "clicks", "addtocart": "carts", "transaction": "orders"}
GENERATED_TABLE_FORMAT = {
    "session": "SessionId",
    "aid": "ItemId",
    "ts": "Time",
    "type": "EventType",
    "ts_unit": "s",
    "event_types": TABLE_TYPES,
}


def write_table(path: Path, rows: int, num_items: int, by_time: bool) -> dict[str, float]:
    """A YOOCHOOSE-like TSV of about ``rows`` synthetic events, in time order or grouped by session."""
    sessions = max(rows // 15, 1)  # the generator's mean session length is ~15 events
    config = SyntheticConfig(num_items=num_items, num_train_sessions=sessions, num_test_sessions=0, seed=2)
    events = synthetic_events(config, "train")
    names = {
        code: raw for raw, name in TABLE_TYPES.items() for code, n in enumerate(EVENT_TYPES) if n == name
    }
    table = events.select(
        pl.col("session").alias("SessionId"),
        pl.col("aid").alias("ItemId"),
        (pl.col("ts") / 1000).alias("Time"),
        pl.col("type").replace_strict(names, return_dtype=pl.String).alias("EventType"),
    )
    if by_time:
        table = table.sort("Time", maintain_order=True)
    table.write_csv(path, separator="\t")
    return {"rows": events.height, "bytes": path.stat().st_size}


def step_table(path: Path, fmt: dict) -> dict[str, float]:
    cpu = _cpu_s()
    began = time.perf_counter()
    tables = ingest_event_tables(path, None, TableFormat(**fmt))
    return {
        "seconds": time.perf_counter() - began,
        "events": tables.train.height,
        "rows": tables.train_report.lines,
        "reordered": tables.train_report.repairs.get("reordered_events", 0),
        "bytes": path.stat().st_size,
        "engine": tables.train_report.engine,
        "cpu_s": _cpu_s() - cpu,
        "peak_rss_mb": _peak_rss_mb(),
    }  # type: ignore[dict-item]


def step_table_baseline(path: Path, fmt: dict) -> dict[str, float]:
    """Plain typed read of the same columns with no checks, grouping or type mapping."""
    cpu = _cpu_s()
    began = time.perf_counter()
    columns = {fmt["session"]: pl.Int64, fmt["aid"]: pl.Int64, fmt["ts"]: pl.Float64}
    if fmt.get("type"):
        columns[fmt["type"]] = pl.String
    separator = "\t" if path.suffix in (".tsv", ".txt", ".tab") else ","
    frame = pl.read_csv(path, separator=separator, columns=list(columns), schema_overrides=columns)
    return {
        "seconds": time.perf_counter() - began,
        "events": frame.height,
        "rows": frame.height,
        "bytes": path.stat().st_size,
        "cpu_s": _cpu_s() - cpu,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _table_row(name: str, result: dict[str, float]) -> str:
    return (
        f"{name:<34} {result['rows'] / 1e6:6.2f} M rows {result['bytes'] / 1e6:7.1f} MB "
        f"{result['seconds']:6.2f} s {result['rows'] / result['seconds'] / 1e6:6.2f} M rows/s "
        f"| cpu {result['cpu_s']:6.2f} s | peak RSS {result['peak_rss_mb']:5.0f} MB"
    )


def bench_tables(folder: Path, table_path: Path | None, fmt: dict | None, rows: int, num_items: int) -> None:
    if table_path is None:
        paths = [folder / "events_by_session.tsv", folder / "events_by_time.tsv"]
        for path in paths:
            written = write_table(path, rows, num_items, by_time=path.stem.endswith("time"))
        print(f"tables: {written['rows'] / 1e6:.2f} M events, {written['bytes'] / 1e6:.1f} MB TSV each")
        fmt = GENERATED_TABLE_FORMAT
    else:
        paths = [table_path]
    spec = json.dumps(fmt or {})
    for path in paths:
        baseline = _run_step("table_baseline", str(path), spec)
        table = _run_step("table", str(path), spec)
        print(f"\nevent table {path.name}")
        print(_table_row(f"ingest_event_tables [{table['engine']}]", table))
        print(_table_row("plain typed pl.read_csv", baseline))
        print(
            f"ingest_event_tables / plain read: {table['seconds'] / baseline['seconds']:.2f}x the time "
            f"(checks, type mapping, ms conversion; grouping moved {table['reordered']:.0f} events)"
        )


# ----------------------------------------------------------------------------------------- driver


def evict_from_page_cache(path: Path) -> None:
    """Drop the file's clean pages from the OS page cache, so that the next read comes from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _run_step(*args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--step", *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _slice(path: Path, dest: Path, megabytes: float) -> Path:
    limit = int(megabytes * 1e6)
    written = 0
    with path.open("rb") as src, dest.open("wb") as out:
        for line in src:
            if written + len(line) > limit:
                break
            out.write(line)
            written += len(line)
    return dest


def _row(name: str, result: dict[str, float]) -> str:
    mb_s = result["bytes"] / 1e6 / result["seconds"]
    ev_s = result["events"] / result["seconds"]
    return (
        f"{name:<42} {result['bytes'] / 1e6:7.1f} MB {result['seconds']:7.2f} s {mb_s:7.1f} MB/s "
        f"{ev_s / 1e6:6.2f} M ev/s | cpu {result['cpu_s']:6.2f} s {result['bytes'] / 1e6 / result['cpu_s']:6.1f} MB/cpu-s"
        f" | peak RSS {result['peak_rss_mb']:5.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--path", type=Path, help="existing OTTO JSONL file (default: generate one)")
    parser.add_argument("--target-mb", type=float, default=530.0, help="size of the generated file")
    parser.add_argument("--baseline-mb", type=float, default=100.0, help="slice for the baselines")
    parser.add_argument("--num-items", type=int, default=500_000)
    parser.add_argument(
        "--cold", action="store_true", help="also ingest the whole file once evicted from the page cache"
    )
    parser.add_argument("--workdir", type=Path, help="where to write files (default: a temp dir)")
    parser.add_argument("--table-only", action="store_true", help="measure event tables only")
    parser.add_argument("--table-rows", type=int, default=2_000_000, help="rows of the generated table")
    parser.add_argument("--table-path", type=Path, help="an existing event table (default: generate one)")
    parser.add_argument("--table-format", type=json.loads, help="TableFormat fields as JSON")
    parser.add_argument("--step", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.step:
        name, *rest = args.step
        if name == "generate":
            result = step_generate(Path(rest[0]), float(rest[1]), int(rest[2]))
        elif name in ("ingest", "precise"):
            result = step_ingest(Path(rest[0]), precise=name == "precise")
        elif name == "polars":
            result = step_polars(Path(rest[0]))
        elif name == "table":
            result = step_table(Path(rest[0]), json.loads(rest[1]))
        elif name == "table_baseline":
            result = step_table_baseline(Path(rest[0]), json.loads(rest[1]))
        else:
            result = step_orjson(Path(rest[0]))
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        if args.table_only:
            bench_tables(folder, args.table_path, args.table_format, args.table_rows, args.num_items)
            return
        path = args.path
        if path is None:
            path = folder / "train.jsonl"
            gen = _run_step("generate", str(path), str(args.target_mb), str(args.num_items))
            events = gen["train_events"]
            rate = events / gen["seconds"]
            print(
                f"generate: {gen['train_sessions']:.0f} sessions, {events / 1e6:.2f} M events, "
                f"{gen['train_bytes'] / 1e6:.1f} MB in {gen['seconds']:.1f} s = {rate / 1e6:.2f} M events/s, "
                f"{gen['train_bytes'] / 1e6 / gen['seconds']:.0f} MB/s, "
                f"{events / gen['cpu_s'] / 1e6:.2f} M events/cpu-s, peak RSS {gen['peak_rss_mb']:.0f} MB"
            )
            print(
                f"          -> full OTTO scale ({OTTO_EVENTS / 1e6:.0f} M events): ~{OTTO_EVENTS / rate / 60:.1f} min"
            )
        size_mb = path.stat().st_size / 1e6
        cold = None
        if args.cold:
            evict_from_page_cache(path)
            cold = _run_step("ingest", str(path))
        full = _run_step("ingest", str(path))
        part = _slice(path, folder / "slice.jsonl", args.baseline_mb)
        results = {
            "ingest (slice)": _run_step("ingest", str(part)),
            "precise path only (slice)": _run_step("precise", str(part)),
            "polars read_ndjson (slice)": _run_step("polars", str(part)),
            "orjson loop (slice)": _run_step("orjson", str(part)),
        }
        print(f"\ninput {path} ({size_mb:.1f} MB); slice = first {args.baseline_mb:.0f} MB of lines")
        if cold is not None:
            print(_row(f"ingest_jsonl [{cold['engine']}], cold (from disk)", cold))
        print(_row(f"ingest_jsonl [{full['engine']}]" + (", warm (page cache)" if cold else ""), full))
        for name, result in results.items():
            print(_row(name, result))

        def mb_s(result: dict[str, float]) -> float:
            return result["bytes"] / result["seconds"]

        def mb_per_cpu_s(result: dict[str, float]) -> float:
            return result["bytes"] / result["cpu_s"]

        print()
        for baseline in ("polars read_ndjson (slice)", "orjson loop (slice)"):
            base = results[baseline]
            print(
                f"ingest_jsonl / {baseline}: wall MB/s {mb_s(full) / mb_s(base):.2f}x (full file), "
                f"{mb_s(results['ingest (slice)']) / mb_s(base):.2f}x (same slice); "
                f"MB per CPU-s {mb_per_cpu_s(full) / mb_per_cpu_s(base):.2f}x (full file)"
            )
        print(
            f"extrapolated full OTTO train file ({OTTO_TRAIN_BYTES / 1e9:.1f} GB): "
            f"~{OTTO_TRAIN_BYTES / mb_s(full):.0f} s with ingest_jsonl, "
            f"~{OTTO_TRAIN_BYTES / mb_s(results['precise path only (slice)']) / 60:.1f} min on the precise path"
        )
        bench_tables(folder, args.table_path, args.table_format, args.table_rows, args.num_items)


if __name__ == "__main__":
    main()

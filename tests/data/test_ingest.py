"""OTTO JSONL ingestion: exact tables for clean files, precise errors and counted skips for bad ones."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gnn_recsys.data import ingest as ingest_module
from gnn_recsys.data.ingest import BadInputError, TooManyBadLinesError, ingest_jsonl, read_events
from gnn_recsys.data.schema import (
    EVENT_SCHEMA,
    EVENT_TYPE_CODES,
    EVENT_TYPES,
    conform_events,
    empty_events,
    event_type_code,
    event_type_names,
)
from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events, write_synthetic_otto
from gnn_recsys.data.validation import check_event_table

OTTO_SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "otto_sample" / "train.jsonl"
T0 = 1_659_304_800_025


def _event(aid: int, ts: int, kind: str = "clicks") -> dict[str, object]:
    return {"aid": aid, "ts": ts, "type": kind}


def _line(session: object, events: object) -> str:
    return orjson.dumps({"session": session, "events": events}).decode()


GOOD = [
    _line(1, [_event(10, T0), _event(11, T0 + 5_000, "carts"), _event(11, T0 + 5_000, "orders")]),
    _line(2, [_event(12, T0 + 1), _event(13, T0 + 2)]),
    _line(3, [_event(14, T0 + 7), _event(10, T0 + 9, "carts")]),
]


def _expected(lines: list[str]) -> pl.DataFrame:
    """Reference table built with a plain loop over the lines (independent of the module)."""
    rows: dict[str, list[int]] = {"session": [], "aid": [], "ts": [], "type": []}
    for line in lines:
        obj = orjson.loads(line)
        for event in obj["events"]:
            rows["session"].append(obj["session"])
            rows["aid"].append(event["aid"])
            rows["ts"].append(event["ts"])
            rows["type"].append(EVENT_TYPE_CODES[event["type"]])
    return pl.DataFrame(rows, schema=EVENT_SCHEMA)


def _write(folder: Path, lines: list[str], name: str = "train.jsonl", newline: str = "\n") -> Path:
    path = folder / name
    path.write_bytes((newline.join(lines) + newline).encode())
    return path


# --------------------------------------------------------------------------------------- clean files


def test_clean_file_takes_the_fast_path_and_matches_the_reference(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    report = ingest_jsonl(path, tmp_path / "out" / "events.parquet", progress=False)
    table = pl.read_parquet(tmp_path / "out" / "events.parquet")
    assert table.schema == EVENT_SCHEMA
    assert table.equals(_expected(GOOD))
    assert report.engine == "duckdb"
    assert (report.lines, report.sessions, report.events) == (3, 3, 7)
    assert report.events_by_type == {"clicks": 4, "carts": 2, "orders": 1}
    assert report.bad_lines == {}
    assert report.bytes == path.stat().st_size


def test_synthetic_round_trip_on_both_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = SyntheticConfig(num_items=300, num_train_sessions=1_500, num_test_sessions=400, seed=3)
    write_synthetic_otto(tmp_path / "train.jsonl", tmp_path / "test.jsonl", config)
    fast = ingest_jsonl(tmp_path / "train.jsonl", tmp_path / "fast.parquet", progress=False)
    test_report = ingest_jsonl(
        tmp_path / "test.jsonl", tmp_path / "test.parquet", min_events=1, progress=False
    )
    monkeypatch.setattr(ingest_module, "_fast_path", lambda *args, **kwargs: None)
    precise = ingest_jsonl(tmp_path / "train.jsonl", tmp_path / "precise.parquet", progress=False)

    expected = synthetic_events(config, "train")
    assert pl.read_parquet(tmp_path / "fast.parquet").equals(expected)
    assert pl.read_parquet(tmp_path / "precise.parquet").equals(expected)
    assert pl.read_parquet(tmp_path / "test.parquet").equals(synthetic_events(config, "test"))
    assert (fast.engine, precise.engine, test_report.engine) == ("duckdb", "python", "duckdb")
    assert fast.events_by_type == precise.events_by_type
    assert (fast.sessions, fast.events) == (precise.sessions, precise.events) == (1_500, expected.height)


def test_real_otto_sample() -> None:
    if not OTTO_SAMPLE.exists():
        pytest.skip(f"real OTTO sample not found at {OTTO_SAMPLE}")
    events = read_events(OTTO_SAMPLE)
    assert events.schema == EVENT_SCHEMA
    assert events.equals(_expected(OTTO_SAMPLE.read_text().splitlines()))
    assert events.height == 862
    assert events["session"].n_unique() == 20
    counts = events["type"].value_counts().sort("type")["count"].to_list()
    assert counts == [800, 52, 10]
    assert events.row(0) == (0, 1517085, 1659304800025, 0)


def test_real_otto_sample_report(tmp_path: Path) -> None:
    if not OTTO_SAMPLE.exists():
        pytest.skip(f"real OTTO sample not found at {OTTO_SAMPLE}")
    report = ingest_jsonl(OTTO_SAMPLE, tmp_path / "sample.parquet", progress=False)
    assert report.engine == "duckdb"
    assert (report.lines, report.sessions, report.events) == (20, 20, 862)
    assert report.events_by_type == {"clicks": 800, "carts": 52, "orders": 10}
    metrics = report.as_dict()
    assert metrics["ingest_events_carts"] == 52.0
    assert metrics["ingest_bad_lines"] == 0.0
    assert all(isinstance(value, float) for value in metrics.values())


def test_legal_variations_are_accepted(tmp_path: Path) -> None:
    # CRLF endings, no final newline, unsorted session ids, equal timestamps, 1-event sessions (test file)
    lines = [
        _line(9, [_event(1, T0), _event(2, T0)]),
        _line(4, [_event(3, T0 + 10)]),
        _line(7, [_event(5, T0 + 1, "carts")]),
    ]
    crlf = _write(tmp_path, lines, "crlf.jsonl", newline="\r\n")
    bare = tmp_path / "bare.jsonl"
    bare.write_text("\n".join(lines))
    for path in (crlf, bare):
        report = ingest_jsonl(path, tmp_path / f"{path.stem}.parquet", min_events=1, progress=False)
        assert report.engine == "duckdb"
        assert pl.read_parquet(tmp_path / f"{path.stem}.parquet").equals(_expected(lines))


def test_byte_order_mark_is_accepted_on_both_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(GOOD) + "\n").encode())
    fast = ingest_jsonl(path, tmp_path / "fast.parquet", progress=False)
    monkeypatch.setattr(ingest_module, "_fast_path", lambda *args, **kwargs: None)
    precise = ingest_jsonl(path, tmp_path / "precise.parquet", progress=False)
    assert (fast.engine, precise.engine) == ("duckdb", "python")
    for name in ("fast", "precise"):
        assert pl.read_parquet(tmp_path / f"{name}.parquet").equals(_expected(GOOD))


def test_empty_file_gives_an_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    report = ingest_jsonl(path, tmp_path / "empty.parquet", progress=False)
    table = pl.read_parquet(tmp_path / "empty.parquet")
    assert table.schema == EVENT_SCHEMA
    assert table.height == 0
    assert (report.lines, report.sessions, report.events) == (0, 0, 0)


def test_escaped_text_is_accepted_by_the_precise_path(tmp_path: Path) -> None:
    # unusual but valid JSON: the byte-count check sends it to the precise path, which accepts it
    lines = [*GOOD, '{"session":4,"events":[{"aid":1,"ts":1659304800025,"type":"cl\\u0069cks"},'
             '{"aid":2,"ts":1659304800026,"type":"clicks"}]}']  # fmt: skip
    report = ingest_jsonl(_write(tmp_path, lines), tmp_path / "out.parquet", progress=False)
    assert report.engine == "python"
    assert report.bad_lines == {}
    table = pl.read_parquet(tmp_path / "out.parquet")
    assert table.equals(_expected(lines))
    assert table.filter(pl.col("session") == 4)["type"].to_list() == [0, 0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sessions=st.lists(
        st.tuples(
            st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=6),
            st.lists(st.integers(0, 3 * 86_400_000), min_size=6, max_size=6),
            st.lists(st.sampled_from(EVENT_TYPES), min_size=6, max_size=6),
        ),
        min_size=1,
        max_size=8,
    ),
    ids=st.permutations(range(8)),
)
def test_random_valid_files_round_trip(
    tmp_path: Path, sessions: list[tuple[list[int], list[int], list[str]]], ids: list[int]
) -> None:
    lines = []
    for (aids, offsets, kinds), session in zip(sessions, ids, strict=False):
        ts = sorted(T0 + offset for offset in offsets)
        lines.append(
            _line(session * 1_000_003, [_event(a, t, k) for a, t, k in zip(aids, ts, kinds, strict=False)])
        )
    path = _write(tmp_path, lines, "random.jsonl")
    dest = tmp_path / "random.parquet"
    report = ingest_jsonl(path, dest, min_events=1, progress=False)
    assert report.engine == "duckdb"
    assert pl.read_parquet(dest).equals(_expected(lines))


# ---------------------------------------------------------------------------------------- bad input

BAD = T0 + 100  # a valid timestamp for the bad line's filler events
BAD_LINES: dict[str, tuple[str, str, str | None, str]] = {
    # case: (line text, reason, field, part of the problem text)
    "malformed_json": ('{"session":7,"events":[', "malformed_json", None, "malformed JSON"),
    "not_an_object": ("[1, 2]", "wrong_type", None, "expected a JSON object"),
    "blank": ("", "blank_line", None, "blank line"),
    "whitespace": ("   \t", "blank_line", None, "blank line"),
    "missing_session": (orjson.dumps({"events": [_event(1, BAD)] * 2}).decode(), "missing_field", "session", "missing"),
    "key_case": ('{"Session":7,"events":[]}', "missing_field", "session", "missing"),
    "missing_events": ('{"session":7}', "missing_field", "events", "missing"),
    "missing_aid": (_line(7, [_event(1, BAD), {"ts": BAD, "type": "clicks"}]), "missing_field", "events[1].aid", "missing"),
    "missing_ts": (_line(7, [_event(1, BAD), {"aid": 1, "type": "clicks"}]), "missing_field", "events[1].ts", "missing"),
    "missing_type": (_line(7, [{"aid": 1, "ts": BAD}, _event(1, BAD)]), "missing_field", "events[0].type", "missing"),
    "session_string": (_line("7", [_event(1, BAD)] * 2), "wrong_type", "session", 'string "7"'),
    "session_null": (_line(None, [_event(1, BAD)] * 2), "wrong_type", "session", "got null"),
    "events_object": (_line(7, _event(1, BAD)), "wrong_type", "events", "expected an array"),
    "event_null": (_line(7, [_event(1, BAD), None]), "wrong_type", "events[1]", "expected an object"),
    "aid_string": (_line(7, [_event("12", BAD), _event(1, BAD)]), "wrong_type", "events[0].aid", 'string "12"'),
    "aid_float": (_line(7, [_event(1, BAD), _event(12.5, BAD)]), "wrong_type", "events[1].aid", "number 12.5"),
    "aid_bool": (_line(7, [_event(True, BAD), _event(1, BAD)]), "wrong_type", "events[0].aid", "boolean true"),
    "ts_string": (_line(7, [_event(1, BAD), _event(1, str(BAD))]), "wrong_type", "events[1].ts", "string"),
    "ts_float": (_line(7, [_event(1, BAD), _event(1, BAD + 0.5)]), "wrong_type", "events[1].ts", "number"),
    "type_int": (_line(7, [_event(1, BAD, 1), _event(1, BAD)]), "wrong_type", "events[0].type", "integer 1"),  # type: ignore[arg-type]
    "unknown_type": (_line(7, [_event(1, BAD), _event(1, BAD, "views")]), "unknown_event_type", "events[1].type", "'views'"),
    "aid_negative": (_line(7, [_event(-1, BAD), _event(1, BAD)]), "out_of_range", "events[0].aid", "-1 is outside"),
    "aid_too_big": (_line(7, [_event(1, BAD), _event(2**31, BAD)]), "out_of_range", "events[1].aid", "2147483648"),
    "session_negative": (_line(-7, [_event(1, BAD)] * 2), "out_of_range", "session", "-7 is outside"),
    "ts_decreasing": (
        _line(7, [_event(1, 1659304800025), _event(2, 1659304900000), _event(3, 1659304800025)]),
        "ts_decreasing",
        "events[2].ts",
        "timestamp decreases (1659304800025 < 1659304900000)",
    ),
    "ts_negative": (_line(7, [_event(1, -5), _event(1, BAD)]), "ts_negative", "events[0].ts", "negative"),
    "ts_seconds": (_line(7, [_event(1, 1659304800), _event(1, 1659304801)]), "ts_not_ms", "events[0].ts", "seconds"),
    "ts_microseconds": (_line(7, [_event(1, BAD * 1000), _event(1, BAD * 1000)]), "ts_not_ms", "events[0].ts", "too large"),
    "empty_session": (_line(7, []), "too_few_events", "events", "0 event(s)"),
    "one_event": (_line(7, [_event(1, BAD)]), "too_few_events", "events", "1 event(s), at least 2"),
    "extra_session_key": (
        orjson.dumps({"session": 7, "events": [_event(1, BAD)] * 2, "user": 1}).decode(),
        "unexpected_field",
        "user",
        "unexpected field",
    ),
    "extra_event_key": (_line(7, [_event(1, BAD), {**_event(1, BAD), "price": 9}]), "unexpected_field", "events[1].price", "unexpected"),
    "duplicate_key": (
        '{"session":7,"session":8,"events":[{"aid":1,"ts":1659304800125,"type":"clicks"},'
        '{"aid":1,"ts":1659304800125,"type":"clicks"}]}',
        "duplicate_key",
        None,
        "duplicate key",
    ),
    # DuckDB accepts trailing commas; strict JSON (and so the precise path) does not: the byte counts
    # send such a file to the precise path, so a line's fate never depends on the other lines
    "trailing_comma_event": (_line(7, [_event(1, BAD)] * 2).replace('"clicks"}', '"clicks",}', 1), "malformed_json", None, "malformed JSON"),
    "trailing_comma_array": (_line(7, [_event(1, BAD)] * 2).replace("}]", "},]"), "malformed_json", None, "malformed JSON"),
    "trailing_comma_session": (_line(7, [_event(1, BAD)] * 2)[:-1] + ",}", "malformed_json", None, "malformed JSON"),
    "duplicate_adjacent": (_line(2, [_event(1, BAD)] * 2), "duplicate_session", "session", "duplicate session id 2 (first on line 2)"),
    "duplicate_session": (_line(1, [_event(1, BAD)] * 2), "duplicate_session", "session", "duplicate session id 1 (first on line 1)"),
}  # fmt: skip


def _bad_file(folder: Path, bad_line: str) -> tuple[Path, list[str]]:
    """GOOD with the bad line inserted as line 3; returns the path and the lines that should survive."""
    lines = [GOOD[0], GOOD[1], bad_line, GOOD[2]]
    return _write(folder, lines), [GOOD[0], GOOD[1], GOOD[2]]


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_line_raises_with_file_line_and_field(tmp_path: Path, case: str) -> None:
    text, reason, field, problem = BAD_LINES[case]
    path, _ = _bad_file(tmp_path, text)
    dest = tmp_path / "out" / "events.parquet"
    with pytest.raises(BadInputError) as info:
        ingest_jsonl(path, dest, progress=False)
    error = info.value
    assert isinstance(error, ValueError)
    assert (error.line, error.reason, error.field) == (3, reason, field)
    message = str(error)
    assert message.startswith(f"{path}:3: ")
    if field is not None:
        assert f"field '{field}'" in message
    assert problem in message
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == [], "no partial or temporary output is left behind"


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_line_is_skipped_counted_and_rejected(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    text, reason, field, problem = BAD_LINES[case]
    path, survivors = _bad_file(tmp_path, text)
    dest, rejects = tmp_path / "events.parquet", tmp_path / "rejects.jsonl"
    with caplog.at_level(logging.WARNING, logger="gnn_recsys.data.ingest"):
        report = ingest_jsonl(path, dest, on_bad_line="skip", rejects_path=rejects, progress=False)
    assert pl.read_parquet(dest).equals(_expected(survivors))
    assert report.bad_lines == {reason: 1}
    assert report.as_dict()[f"ingest_bad_{reason}"] == 1.0
    assert (report.lines, report.sessions) == (4, 3)
    assert "skipped 1 bad line(s)" in caplog.text
    records = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert len(records) == 1
    assert (records[0]["line"], records[0]["reason"], records[0]["field"]) == (3, reason, field)
    assert records[0]["text"] == text
    assert problem in records[0]["message"]


def test_one_event_sessions_are_legal_in_test_files(tmp_path: Path) -> None:
    path, _ = _bad_file(tmp_path, BAD_LINES["one_event"][0])
    report = ingest_jsonl(path, tmp_path / "test.parquet", min_events=1, progress=False)
    assert report.bad_lines == {}
    assert report.sessions == 4


def test_many_bad_lines_are_counted_by_reason(tmp_path: Path) -> None:
    lines = [
        GOOD[0],
        "",
        BAD_LINES["aid_string"][0],
        GOOD[1],
        BAD_LINES["ts_decreasing"][0],
        BAD_LINES["aid_float"][0],
        _line(
            2, [_event(99, T0), _event(98, T0)]
        ),  # duplicate of the GOOD[1] session id: the later is rejected
        GOOD[2],
    ]
    dest = tmp_path / "events.parquet"
    report = ingest_jsonl(_write(tmp_path, lines), dest, on_bad_line="skip", progress=False)
    assert report.bad_lines == {"blank_line": 1, "wrong_type": 2, "ts_decreasing": 1, "duplicate_session": 1}
    assert report.bad_line_count == 5
    assert pl.read_parquet(dest).equals(_expected(GOOD))
    with pytest.raises(BadInputError, match=r"train\.jsonl:2: blank line"):
        ingest_jsonl(tmp_path / "train.jsonl", dest, progress=False)


def test_bad_line_deep_in_a_large_file_is_located(tmp_path: Path) -> None:
    config = SyntheticConfig(num_items=200, num_train_sessions=3_000, num_test_sessions=10, seed=5)
    write_synthetic_otto(tmp_path / "train.jsonl", tmp_path / "test.jsonl", config)
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    lines[2_500] = lines[2_500].replace('"type":"clicks"', '"type":"click"', 1)
    path = _write(tmp_path, lines, "corrupt.jsonl")
    with pytest.raises(
        BadInputError, match=r"corrupt\.jsonl:2501: field 'events\[0\]\.type': unknown event type 'click'"
    ):
        ingest_jsonl(path, tmp_path / "x.parquet", progress=False)


def _verify_table(path: Path, rows: list[tuple[int, int, int]], workers: int) -> object:
    """``_verify_output`` on a parquet of (session, ts, type) rows in row groups of 3 rows, with the
    byte counts a canonical file of those sessions would have."""
    session, ts, kind = (list(column) for column in zip(*rows, strict=True))
    table = pl.DataFrame(
        {"session": session, "aid": [1] * len(rows), "ts": ts, "type": kind}, schema=EVENT_SCHEMA
    ).to_arrow()
    pq.write_table(table, path, row_group_size=3)
    lines = 1 + sum(1 for a, b in zip(session, session[1:], strict=False) if a != b)
    counts = {
        "lines": lines,
        "quotes": ingest_module.QUOTES_PER_LINE * lines + ingest_module.QUOTES_PER_EVENT * len(rows),
        "e": 3 * lines + len(rows) + kind.count(2),
        "commas": ingest_module.COMMAS_PER_EVENT * len(rows),
        "forbidden": 0,
    }
    return ingest_module._verify_output(path, counts, min_events=2, workers=workers)


def test_verification_in_parallel_slices_agrees_with_one_pass(tmp_path: Path) -> None:
    # sessions of 2..5 events in row groups of 3 rows: with 1..6 workers the slice boundaries fall
    # inside sessions, between them and on a session's last row.
    lengths = [2, 5, 3, 2, 4, 2, 3, 5, 2, 3]
    rows = [(10 + s, T0 + 1_000 * s + i, (s + i) % 3) for s, n in enumerate(lengths) for i in range(n)]
    per_type = [sum(1 for row in rows if row[2] == code) for code in range(3)]
    for workers in range(1, 7):
        assert _verify_table(tmp_path / "ok.parquet", rows, workers) == (len(lengths), len(rows), per_type)
    firsts = {0} | {i for i in range(1, len(rows)) if rows[i][0] != rows[i - 1][0]}
    for position in set(range(len(rows))) - firsts:  # ts going back at every position inside a session
        bad = list(rows)
        bad[position] = (rows[position][0], rows[position - 1][1] - 1, 0)
        for workers in range(1, 7):
            assert _verify_table(tmp_path / "back.parquet", bad, workers) is None, (position, workers)
    # the first session again at the end, and a session cut in two by another one: both rejected
    again = rows + [(10, T0 + 99_000, 0), (10, T0 + 99_001, 0)]
    split = rows[:4] + rows[7:10] + rows[4:7] + rows[10:]  # session 11: 2 events, 12, then 11 again
    for workers in range(1, 7):
        assert _verify_table(tmp_path / "again.parquet", again, workers) is None
        assert _verify_table(tmp_path / "split.parquet", split, workers) is None


def test_trailing_comma_alone_does_not_pass_the_fast_path(tmp_path: Path) -> None:
    text = BAD_LINES["trailing_comma_event"][0]
    with pytest.raises(BadInputError, match=r"alone\.jsonl:1: malformed JSON"):
        ingest_jsonl(_write(tmp_path, [text], "alone.jsonl"), tmp_path / "x.parquet", progress=False)


def test_gzip_is_read_transparently_on_both_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packed = tmp_path / "train.jsonl.gz"
    packed.write_bytes(gzip.compress(("\n".join(GOOD) + "\n").encode()))
    fast = ingest_jsonl(packed, tmp_path / "fast.parquet", progress=False)
    assert fast.engine == "duckdb" and fast.lines == 3
    assert pl.read_parquet(tmp_path / "fast.parquet").equals(_expected(GOOD))
    bad = tmp_path / "bad"  # gzip is recognised by its bytes, whatever the name
    bad.write_bytes(
        gzip.compress(("\n".join([GOOD[0], BAD_LINES["aid_string"][0], GOOD[1]]) + "\n").encode())
    )
    with pytest.raises(BadInputError, match=r"bad:2: field 'events\[0\]\.aid'"):
        ingest_jsonl(bad, tmp_path / "bad.parquet", progress=False)
    monkeypatch.setattr(ingest_module, "_fast_path", lambda *args, **kwargs: None)
    precise = ingest_jsonl(packed, tmp_path / "precise.parquet", progress=False)
    assert precise.engine == "python"
    assert pl.read_parquet(tmp_path / "precise.parquet").equals(_expected(GOOD))


def test_other_compressions_are_named(tmp_path: Path) -> None:
    for magic, name in ((b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh91AY", "bzip2"), (b"PK\x03\x04", "zip")):
        path = tmp_path / "train.jsonl"
        path.write_bytes(magic + b"\0" * 32)
        with pytest.raises(ValueError, match=f"{name}-compressed"):
            ingest_jsonl(path, tmp_path / "x.parquet", on_bad_line="skip", progress=False)


def test_skipping_stops_when_too_much_is_rejected(tmp_path: Path) -> None:
    path, survivors = _bad_file(tmp_path, BAD_LINES["aid_string"][0])  # 1 bad line of 4
    with pytest.raises(
        TooManyBadLinesError, match=r"1 of 4 lines \(25\.00%\) were rejected.*max_bad_share=0\.2"
    ):
        ingest_jsonl(path, tmp_path / "x.parquet", on_bad_line="skip", max_bad_share=0.2, progress=False)
    assert not (tmp_path / "x.parquet").exists()
    report = ingest_jsonl(
        path, tmp_path / "x.parquet", on_bad_line="skip", max_bad_share=0.25, progress=False
    )
    assert report.bad_line_count == 1
    garbage = tmp_path / "garbage.jsonl"  # not JSON at all: every line is rejected, whatever the share
    garbage.write_bytes(bytes(range(256)) * 40)
    rejects = tmp_path / "rejects.jsonl"
    with pytest.raises(
        TooManyBadLinesError, match=r"all \d+ lines were rejected \(listed in .*rejects\.jsonl\)"
    ):
        ingest_jsonl(
            garbage, tmp_path / "g.parquet", on_bad_line="skip", rejects_path=rejects, progress=False
        )
    assert rejects.read_bytes()
    with pytest.raises(ValueError, match="max_bad_share"):
        ingest_jsonl(path, tmp_path / "x.parquet", max_bad_share=1.5)


def test_output_is_zstd_parquet_with_contract_types(tmp_path: Path) -> None:
    dest = tmp_path / "events.parquet"
    ingest_jsonl(_write(tmp_path, GOOD), dest, progress=False)
    metadata = pq.ParquetFile(dest).metadata
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    assert pl.read_parquet_schema(dest) == dict(EVENT_SCHEMA)


def test_invalid_arguments(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    with pytest.raises(ValueError, match="min_events"):
        ingest_jsonl(path, tmp_path / "x.parquet", min_events=0)
    with pytest.raises(ValueError, match="on_bad_line"):
        ingest_jsonl(path, tmp_path / "x.parquet", on_bad_line="ignore")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        ingest_jsonl(tmp_path / "absent.jsonl", tmp_path / "x.parquet")


def test_check_event_table_rejects_contract_violations() -> None:
    good = _expected(GOOD)
    check_event_table(good)
    check_event_table(empty_events())
    broken = {
        "schema": good.with_columns(pl.col("aid").cast(pl.Int64)),
        "null": good.with_columns(
            pl.when(pl.col("aid") == 11).then(None).otherwise(pl.col("aid")).alias("aid")
        ),
        "type code": good.with_columns(pl.lit(3, dtype=pl.Int8).alias("type")),
        "seconds": good.with_columns((pl.col("ts") // 1000).alias("ts")),
        "ts order": good.with_columns(pl.col("ts").reverse()),
        "not contiguous": pl.concat([good.head(2), good.tail(4), good.slice(2, 1)]),
    }
    messages = {
        "schema": "schema",
        "null": "null",
        "type code": "invalid row",
        "seconds": "invalid row",
        "ts order": "invalid row",
        "not contiguous": "not contiguous",
    }
    for name, frame in broken.items():
        with pytest.raises(ValueError, match=messages[name]):
            check_event_table(frame, name)


def test_schema_helpers() -> None:
    frame = pl.DataFrame(
        {"type": [2, 0], "ts": [T0, T0 + 1], "aid": [5, 6], "session": [1, 1], "extra": [0, 0]}
    )
    events = conform_events(frame)
    assert events.schema == EVENT_SCHEMA
    assert events["type"].to_list() == [2, 0]
    assert event_type_names(events["type"]).to_list() == ["orders", "clicks"]
    assert [event_type_code(name) for name in EVENT_TYPES] == [0, 1, 2]
    with pytest.raises(KeyError, match="views"):
        event_type_code("views")
    with pytest.raises(ValueError, match="lacks"):
        conform_events(frame.drop("ts"))
    with pytest.raises(pl.exceptions.InvalidOperationError):
        conform_events(frame.with_columns(pl.lit(2**40).alias("aid")))

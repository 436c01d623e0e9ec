"""Event-table ingestion (CSV/TSV/parquet, one row per event): the same typed table as the JSONL path,
column and type mappings, time units, grouping, id codes, and the bad-input contract by row."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import orjson
import polars as pl
import pytest

from gnn_recsys.data import events_table as events_table_module
from gnn_recsys.data.events_table import (
    TableFormat,
    encode_ids,
    ingest_event_tables,
    load_event_table,
)
from gnn_recsys.data.ingest import read_events
from gnn_recsys.data.schema import EVENT_SCHEMA, EVENT_TYPES
from gnn_recsys.data.synthetic import SyntheticConfig, events_to_otto_jsonl, synthetic_events
from gnn_recsys.data.validation import BadInputError, TooManyBadLinesError, check_event_table

T0 = 1_659_304_800_025
#: (session, aid, ts ms, type) in session order, time-ordered within each session.
EVENTS = [
    (1, 10, T0, "clicks"),
    (1, 11, T0 + 5_000, "carts"),
    (1, 11, T0 + 5_000, "orders"),
    (2, 12, T0 + 1, "clicks"),
    (2, 13, T0 + 2, "clicks"),
    (3, 14, T0 + 7, "clicks"),
    (3, 10, T0 + 9, "carts"),
]
HEADER = ("session", "aid", "ts", "type")


def _expected(events: list[tuple[int, int, int, str]] = EVENTS) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "session": [e[0] for e in events],
            "aid": [e[1] for e in events],
            "ts": [e[2] for e in events],
            "type": [EVENT_TYPES.index(e[3]) for e in events],
        },
        schema=EVENT_SCHEMA,
    )


def _write(
    path: Path, rows: list[tuple[object, ...]], header: tuple[str, ...] = HEADER, sep: str = ","
) -> Path:
    lines = [sep.join(header)] + [sep.join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(path: Path, fmt: TableFormat | None = None, **kwargs: object) -> pl.DataFrame:
    return ingest_event_tables(path, None, fmt, **kwargs).train  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- same table as JSONL


def test_csv_tsv_and_parquet_give_the_jsonl_table(tmp_path: Path) -> None:
    config = SyntheticConfig(num_items=200, num_train_sessions=400, num_test_sessions=50, seed=11)
    events = synthetic_events(config, "train")
    events_to_otto_jsonl(events, tmp_path / "train.jsonl")
    from_jsonl = read_events(tmp_path / "train.jsonl")
    named = events.with_columns(
        pl.col("type").replace_strict(dict(enumerate(EVENT_TYPES)), return_dtype=pl.String)
    )
    named.write_csv(tmp_path / "train.csv")
    named.write_csv(tmp_path / "train.tsv", separator="\t")
    named.write_parquet(tmp_path / "train.parquet")
    with gzip.open(tmp_path / "train.tsv.gz", "wb") as fh:
        fh.write((tmp_path / "train.tsv").read_bytes())
    for name in ("train.csv", "train.tsv", "train.parquet", "train.tsv.gz"):
        tables = ingest_event_tables(tmp_path / name)
        assert tables.train.equals(from_jsonl), name
        assert tables.train.equals(events), name
        assert tables.session_id_map.is_empty() and tables.aid_id_map.is_empty()
        report = tables.train_report
        assert (report.lines, report.events, report.sessions) == (events.height, events.height, 400)
        assert report.bad_lines == {} and report.repairs == {"reordered_events": 0}
    assert ingest_event_tables(tmp_path / "train.parquet").train_report.engine == "parquet"
    assert ingest_event_tables(tmp_path / "train.csv").train_report.engine == "polars"


def test_every_reader_gives_the_same_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Typed polars read, text read and the Python csv reader agree (the last two are fallbacks)."""
    path = _write(tmp_path / "events.csv", [(s, a, f" {t}", k) for s, a, t, k in EVENTS])  # noqa: FURB118
    typed = ingest_event_tables(path)
    real_read_csv = pl.read_csv
    calls: list[int] = []

    def failing(limit: int):  # noqa: ANN202
        def read_csv(*args: object, **kwargs: object) -> pl.DataFrame:
            calls.append(1)
            if len(calls) <= limit:
                raise pl.exceptions.ComputeError("forced")
            return real_read_csv(*args, **kwargs)  # type: ignore[arg-type]

        return read_csv

    monkeypatch.setattr(events_table_module.pl, "read_csv", failing(1))
    text = ingest_event_tables(path)
    calls.clear()
    monkeypatch.setattr(events_table_module.pl, "read_csv", failing(2))
    python = ingest_event_tables(path)
    engines = [t.train_report.engine for t in (typed, text, python)]
    assert engines == ["polars", "polars-text", "python-csv"]
    for tables in (typed, text, python):
        assert tables.train.equals(_expected())


# ------------------------------------------------------------------------- mappings, units, order


def test_column_and_event_type_mapping(tmp_path: Path) -> None:
    names = {"clicks": "view", "carts": "addtocart", "orders": "transaction"}
    rows = [(k and names[k], t // 1000, s, a, "x") for s, a, t, k in EVENTS]
    header = ("EventType", "Time", "SessionId", "ItemId", "Unused")
    fmt = TableFormat(
        session="SessionId",
        aid="ItemId",
        ts="Time",
        type="EventType",
        ts_unit="s",
        event_types={"view": "clicks", "addtocart": "carts", "transaction": "orders"},
    )
    table = _train(_write(tmp_path / "events.csv", rows, header), fmt)
    assert table.equals(_expected().with_columns((pl.col("ts") // 1000 * 1000).alias("ts")))


def test_integer_type_codes_and_no_type_column(tmp_path: Path) -> None:
    rows = [(s, a, t, EVENT_TYPES.index(k)) for s, a, t, k in EVENTS]
    fmt = TableFormat(event_types={0: "clicks", 1: "carts", 2: "orders"})  # type: ignore[dict-item]
    assert _train(_write(tmp_path / "codes.csv", rows), fmt).equals(_expected())
    clicks = _write(tmp_path / "clicks.csv", [(s, a, t) for s, a, t, _ in EVENTS], HEADER[:3])
    assert _train(clicks).equals(_expected().with_columns(pl.lit(0, dtype=pl.Int8).alias("type")))
    assert _train(clicks, TableFormat(type=None)).equals(_train(clicks))


@pytest.mark.parametrize(
    ("unit", "raw", "ms"),
    [
        ("s", "1396860669.277", 1_396_860_669_277),
        ("s", "1396860669", 1_396_860_669_000),
        ("s", "1396860669.2776", 1_396_860_669_278),
        ("ms", "1396860669277", 1_396_860_669_277),
        ("ms", "1396860669277.6", 1_396_860_669_278),
        ("us", "1396860669277499", 1_396_860_669_277),
        ("us", "1396860669277500", 1_396_860_669_278),
        ("ns", "1396860669277400000", 1_396_860_669_277),
        ("datetime", "2014-04-07T10:51:09.277Z", 1_396_867_869_277),
        ("datetime", "2014-04-07 10:51:09.277", 1_396_867_869_277),
    ],
)
def test_time_units(tmp_path: Path, unit: str, raw: str, ms: int) -> None:
    path = _write(tmp_path / "t.csv", [(1, 5, raw, "clicks"), (1, 6, raw, "clicks")])
    table = _train(path, TableFormat(ts_unit=unit))
    assert table["ts"].to_list() == [ms, ms]


def test_datetime_format_and_parquet_time_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.csv", [(1, 5, "07/04/2014 10:51:09", "clicks"), (1, 6, "08/04/2014 00:00:00", "carts")]
    )
    table = _train(path, TableFormat(ts_unit="datetime", ts_format="%d/%m/%Y %H:%M:%S"))
    assert table["ts"].to_list() == [1_396_867_869_000, 1_396_915_200_000]
    stamps = pl.Series([1_396_867_869_277, 1_396_867_869_278]).cast(pl.Datetime("ms"))
    base = pl.DataFrame({"session": [1, 1], "aid": [5, 6], "type": ["clicks", "clicks"]})
    for ts in (stamps, stamps.dt.replace_time_zone("UTC"), stamps.cast(pl.Datetime("ns"))):
        base.with_columns(ts=ts).write_parquet(tmp_path / "t.parquet")
        assert _train(tmp_path / "t.parquet")["ts"].to_list() == [1_396_867_869_277, 1_396_867_869_278]
    base.with_columns(ts=pl.Series([1396867869.277, 1396867869.278])).write_parquet(tmp_path / "s.parquet")
    assert _train(tmp_path / "s.parquet", TableFormat(ts_unit="s"))["ts"].to_list() == [
        1_396_867_869_277,
        1_396_867_869_278,
    ]


def test_rows_are_grouped_by_session_and_time_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # session 2 first appears before session 1 here; session 1's rows are split and out of time order
    rows = [
        (2, 12, T0 + 1, "clicks"),
        (1, 11, T0 + 5_000, "carts"),
        (2, 13, T0 + 2, "clicks"),
        (1, 10, T0, "clicks"),
        (1, 11, T0 + 5_000, "orders"),  # same ts as the cart: keeps file order
    ]
    path = _write(tmp_path / "shuffled.csv", rows)
    with caplog.at_level(logging.WARNING, logger="gnn_recsys.data.events_table"):
        tables = ingest_event_tables(path)
    assert tables.train.equals(_expected([EVENTS[3], EVENTS[4], EVENTS[0], EVENTS[1], EVENTS[2]]))
    check_event_table(tables.train)
    assert tables.train_report.repairs == {"reordered_events": 3}
    assert tables.train_report.as_dict()["ingest_repair_reordered_events"] == 3.0
    assert "3 of 5 events were moved" in caplog.text


def test_separator_from_extension_or_header(tmp_path: Path) -> None:
    rows = [(s, a, t, k) for s, a, t, k in EVENTS]
    for name, sep in (("a.txt", "\t"), ("b.dat", ";"), ("c.tab", "\t")):
        assert _train(_write(tmp_path / name, rows, sep=sep)).equals(_expected()), name
    crlf = tmp_path / "crlf.tsv"
    crlf.write_bytes(_write(tmp_path / "lf.tsv", rows, sep="\t").read_bytes().replace(b"\n", b"\r\n"))
    assert _train(crlf).equals(_expected())
    with pytest.raises(ValueError, match="no column 'session'.*separator ','.*session;aid;ts;type"):
        _train(_write(tmp_path / "semicolon.csv", rows, sep=";"))
    assert _train(tmp_path / "semicolon.csv", TableFormat(separator=";")).equals(_expected())


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv", [(1, 2, T0)], ("SessionId", "ItemId", "Time"))
    with pytest.raises(
        ValueError, match=r"no column 'ItemID' \(columns.aid\).*'SessionId', 'ItemId', 'Time'"
    ):
        _train(path, TableFormat(session="SessionId", aid="ItemID", ts="Time"))
    with pytest.raises(ValueError, match="unknown key"):
        TableFormat.from_params({"sesion": "SessionId"})
    with pytest.raises(ValueError, match="ts_unit"):
        TableFormat(ts_unit="minutes")
    with pytest.raises(ValueError, match="event_types must map"):
        TableFormat(event_types={"view": "views"})


# -------------------------------------------------------------------------------------- id codes


def test_text_and_64_bit_ids_get_shared_dense_codes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    big = 2**40
    train = _write(
        tmp_path / "train.csv",
        [("u-b", big + 1, T0, "clicks"), ("u-b", 7, T0 + 1, "carts"), ("u-a", big + 1, T0 + 2, "clicks"), ("u-a", 8, T0 + 3, "clicks")],
    )  # fmt: skip
    test = _write(tmp_path / "test.csv", [("u-c", 8, T0 + 9, "orders"), ("u-d", big + 2, T0 + 9, "clicks")])
    with caplog.at_level(logging.WARNING, logger="gnn_recsys.data.events_table"):
        tables = ingest_event_tables(train, test)
    assert tables.train.schema == EVENT_SCHEMA
    assert tables.train["session"].to_list() == [0, 0, 1, 1]
    assert tables.train["aid"].to_list() == [0, 1, 0, 2]
    assert tables.test["session"].to_list() == [2, 3]
    assert tables.test["aid"].to_list() == [2, 3]
    assert tables.session_id_map.to_dict(as_series=False) == {
        "session": [0, 1, 2, 3],
        "source_id": ["u-b", "u-a", "u-c", "u-d"],
    }
    assert tables.aid_id_map.to_dict(as_series=False) == {
        "aid": [0, 1, 2, 3],
        "source_id": [big + 1, 7, 8, big + 2],
    }
    # translating back gives the file's ids
    back = tables.test.join(tables.aid_id_map, on="aid", how="left")["source_id"].to_list()
    assert back == [8, big + 2]
    assert "'u-b'" in caplog.text and f"{big + 1}" in caplog.text and "data row 1" in caplog.text


def test_id_codes_never_turns_such_ids_into_bad_rows(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "e.csv", [(1, 2, T0, "clicks"), (1, 2**31, T0, "clicks"), (2, "x", T0, "clicks")]
    )
    with pytest.raises(BadInputError) as info:
        _train(path, TableFormat(id_codes="never"))
    assert (info.value.line, info.value.field, info.value.reason) == (2, "aid", "out_of_range")
    path = _write(tmp_path / "e.csv", [(1, 2, T0, "clicks"), ("s1", 3, T0, "clicks")])
    with pytest.raises(
        BadInputError, match=r"data row 2 .*column 'session': expected an integer id, got 's1'"
    ):
        _train(path, TableFormat(id_codes="never"))


def test_train_and_test_must_not_share_sessions(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", [(s, a, t, k) for s, a, t, k in EVENTS])
    test = _write(tmp_path / "test.csv", [(9, 1, T0, "clicks"), (2, 1, T0, "clicks")])
    with pytest.raises(
        BadInputError, match=r"test\.csv: data row 2 .*column 'session': session 2 also occurs"
    ):
        ingest_event_tables(train, test)


def test_encode_ids_keeps_small_integer_ids(tmp_path: Path) -> None:
    loaded = load_event_table(_write(tmp_path / "e.csv", [(s, a, t, k) for s, a, t, k in EVENTS]))
    (typed,), session_map, aid_map = encode_ids([loaded])
    assert typed.equals(_expected())
    assert session_map.is_empty() and aid_map.is_empty()


# --------------------------------------------------------------------------------------- bad input

GOOD_ROWS = [
    (1, 10, T0, "clicks"),
    (1, 11, T0 + 1, "carts"),
    (2, 12, T0 + 2, "clicks"),
    (2, 13, T0 + 3, "orders"),
]
# case: (bad row inserted as data row 3, reason, column, part of the problem text)
BAD_ROWS: dict[str, tuple[tuple[object, ...], str, str | None, str]] = {
    "null_session": ((None, 10, T0, "clicks"), "missing_field", "session", "missing value"),
    "null_aid": ((3, None, T0, "clicks"), "missing_field", "aid", "missing value"),
    "null_ts": ((3, 10, None, "clicks"), "missing_field", "ts", "missing value"),
    "null_type": ((3, 10, T0, None), "missing_field", "type", "missing value"),
    "blank": ((None, None, None, None), "blank_line", None, "blank row"),
    "ts_text": ((3, 10, "yesterday", "clicks"), "wrong_type", "ts", "expected a number (ts_unit='ms'), got 'yesterday'"),
    "ts_nan": ((3, 10, "nan", "clicks"), "wrong_type", "ts", "got 'nan'"),
    "ts_negative": ((3, 10, -5, "clicks"), "ts_negative", "ts", "negative timestamp -5"),
    "ts_seconds": ((3, 10, T0 // 1000, "clicks"), "ts_not_ms", "ts", "check ts_unit"),
    "unknown_type": ((3, 10, T0, "views"), "unknown_event_type", "type", "unknown event type 'views'"),
    "malformed": ((3, 10, T0, "clicks", "extra"), "malformed_row", None, "row has 5 fields, the header 4"),
}  # fmt: skip


def _bad_table(folder: Path, bad: tuple[object, ...]) -> Path:
    return _write(folder / "events.csv", [GOOD_ROWS[0], GOOD_ROWS[1], bad, GOOD_ROWS[2], GOOD_ROWS[3]])


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_raises_with_file_row_and_column(tmp_path: Path, case: str) -> None:
    row, reason, column, problem = BAD_ROWS[case]
    path = _bad_table(tmp_path, row)
    with pytest.raises(BadInputError) as info:
        ingest_event_tables(path)
    error = info.value
    assert (error.path, error.line, error.reason, error.field) == (str(path), 3, reason, column)
    message = str(error)
    assert message.startswith(f"{path}: data row 3 (1-based, header not counted): ")
    if column is not None:
        assert f"column '{column}'" in message
    assert problem in message


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_is_skipped_counted_and_rejected(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    row, reason, column, problem = BAD_ROWS[case]
    path, rejects = _bad_table(tmp_path, row), tmp_path / "rejects" / "train_rejects.jsonl"
    with caplog.at_level(logging.WARNING, logger="gnn_recsys.data.events_table"):
        tables = ingest_event_tables(path, on_bad_line="skip", train_rejects_path=rejects)
    assert tables.train.equals(_expected(GOOD_ROWS))  # type: ignore[arg-type]
    report = tables.train_report
    assert report.bad_lines == {reason: 1}
    assert (report.lines, report.events) == (5, 4)
    assert report.as_dict()[f"ingest_bad_{reason}"] == 1.0
    assert "skipped 1 bad row(s) of 5" in caplog.text
    records = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert [(r["row"], r["reason"], r["field"]) for r in records] == [(3, reason, column)]
    assert problem in records[0]["message"] and str(path) in records[0]["message"]
    if reason != "malformed_row":
        assert records[0]["values"] == {
            h: None if v is None else str(v) for h, v in zip(HEADER, row, strict=True)
        }


def test_a_rows_fate_does_not_depend_on_other_rows(tmp_path: Path) -> None:
    """A ragged row sends the file to the Python reader; every other row is judged as before."""
    rows = [*GOOD_ROWS, (3, 14, " 17", "clicks"), (3, 15, T0 + 9, "clicks"), (4, None, T0, "carts")]
    plain = ingest_event_tables(_write(tmp_path / "a.csv", rows), on_bad_line="skip")
    ragged = ingest_event_tables(
        _write(tmp_path / "b.csv", [*rows, (5, 1, T0, "clicks", "x")]), on_bad_line="skip"
    )
    assert plain.train_report.engine == "polars"
    assert ragged.train_report.engine == "python-csv"
    assert plain.train.equals(ragged.train)
    # session 3 keeps one valid event (too few), session 4 none
    assert plain.train_report.bad_lines == {"ts_not_ms": 1, "missing_field": 1, "too_few_events": 1}
    assert ragged.train_report.bad_lines == {**plain.train_report.bad_lines, "malformed_row": 1}


def test_blank_and_quoted_empty_values_are_missing_on_every_reader(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        f'session,aid,ts,type\n1,10,{T0},clicks\n1,"",{T0},clicks\n1,11,{T0}, \n2,12,{T0},clicks\n'
    )
    with pytest.raises(BadInputError) as info:
        ingest_event_tables(path)
    assert (info.value.line, info.value.field, info.value.reason) == (2, "aid", "missing_field")
    tables = ingest_event_tables(path, on_bad_line="skip", min_events=1)
    assert tables.train_report.bad_lines == {"missing_field": 2}
    assert tables.train.height == 2 and tables.session_id_map.is_empty()


def test_bad_rows_of_parquet_files_and_date_texts_are_named(tmp_path: Path) -> None:
    frame = pl.DataFrame({"s": [1, 1, 2], "a": [10, None, 12], "t": [T0, T0, T0], "k": ["clicks"] * 3})
    frame.write_parquet(tmp_path / "e.parquet")
    fmt = TableFormat(session="s", aid="a", ts="t", type="k")
    with pytest.raises(BadInputError, match=r"e\.parquet: data row 2 .*column 'a': missing value"):
        _train(tmp_path / "e.parquet", fmt)
    path = _write(tmp_path / "d.csv", [(1, 5, "2014-04-07 10:51:09", "clicks"), (1, 6, "7 April", "clicks")])
    with pytest.raises(
        BadInputError, match=r"data row 2 .*column 'ts': cannot parse '7 April' as a date-time"
    ):
        _train(path, TableFormat(ts_unit="datetime"))


def test_sessions_with_too_few_events(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS, (7, 1, T0, "clicks")]
    path = _write(tmp_path / "e.csv", rows)
    with pytest.raises(
        BadInputError, match=r"data row 5 .*column 'session': session 7 has 1 event\(s\), at least 2"
    ):
        ingest_event_tables(path)
    test = load_event_table(path, min_events=1)  # a test file's 1-event sessions are legal
    assert test.report.events == 5
    skipped = load_event_table(path, on_bad_line="skip")
    assert skipped.report.bad_lines == {"too_few_events": 1}


def test_unterminated_quote_stops_even_when_skipping(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(f'session,aid,ts,type\n1,2,{T0},clicks\n1,"3,{T0},clicks\n2,4,{T0},clicks\n')
    with pytest.raises(BadInputError, match=r"cannot be read past it"):
        ingest_event_tables(path, on_bad_line="skip")


def test_too_many_rejected_rows_stop_the_run(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS, (3, 1, "x", "clicks"), (3, 2, "y", "clicks")]
    path = _write(tmp_path / "e.csv", rows)
    with pytest.raises(
        TooManyBadLinesError, match=r"2 of 6 rows \(33\.33%\) were rejected.*max_bad_share=0\.25"
    ):
        ingest_event_tables(path, on_bad_line="skip", max_bad_share=0.25)
    assert ingest_event_tables(path, on_bad_line="skip", max_bad_share=0.5).train_report.bad_lines == {
        "wrong_type": 2
    }
    wrong_unit = _write(tmp_path / "s.csv", [(s, a, t // 1000, k) for s, a, t, k in EVENTS])
    with pytest.raises(TooManyBadLinesError, match="all 7 rows were rejected"):
        ingest_event_tables(wrong_unit, on_bad_line="skip")


def test_compressed_and_empty_files(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.csv", [(s, a, t, k) for s, a, t, k in EVENTS])
    packed = tmp_path / "packed"  # gzip is recognised by its bytes, not its name
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert _train(packed, TableFormat(separator=",")).equals(_expected())
    zstd = tmp_path / "e.csv.zst"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 16)
    with pytest.raises(ValueError, match="zstd-compressed"):
        _train(zstd)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    header_only = _write(tmp_path / "header.csv", [])
    for file in (empty, header_only):
        tables = ingest_event_tables(file)
        assert tables.train.is_empty() and tables.train.schema == EVENT_SCHEMA
        assert tables.train_report.lines == 0

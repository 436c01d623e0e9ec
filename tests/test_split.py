"""Tests for the official-protocol OTTO validation split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from gnn_recsys.data.schema import CART, CLICK, MS_PER_DAY, ORDER
from gnn_recsys.data.split import (
    as_event_table,
    draw_cut_points,
    labels_to_official_json,
    split_events,
)
from gnn_recsys.pipelines.data_split.nodes import split_local_validation

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "otto_sample" / "train.jsonl"


def event_table(rows: list[tuple[int, int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"session": pl.Int32, "aid": pl.Int32, "ts": pl.Int64, "type": pl.Int8},
        orient="row",
    )


def rows_of(frame: pl.DataFrame) -> list[tuple]:
    return [tuple(r) for r in frame.iter_rows()]


# ---------------------------------------------------------------------------------------------------
# Reference: the official testset.py/labels.py algorithm written with plain per-session loops.
# ---------------------------------------------------------------------------------------------------
def reference_split(rows: list[tuple[int, int, int, int]], test_days: int, seed: int):
    sessions: dict[int, list[tuple[int, int, int]]] = {}
    for session, aid, ts, event_type in rows:
        sessions.setdefault(session, []).append((aid, ts, event_type))
    max_ts = max(ts for _, _, ts, _ in rows)
    split_ts = max_ts - test_days * 24 * 60 * 60 * 1000

    train: dict[int, list[tuple[int, int, int]]] = {}
    test_full: dict[int, list[tuple[int, int, int]]] = {}
    for session in sorted(sessions):
        events = sessions[session]
        if events[0][1] > split_ts:
            test_full[session] = events
        else:
            trimmed = [e for e in events if e[1] < split_ts]
            if len(trimmed) >= 2:
                train[session] = trimmed
    train_items = {aid for events in train.values() for aid, _, _ in events}
    test: dict[int, list[tuple[int, int, int]]] = {}
    for session, events in test_full.items():
        kept = [e for e in events if e[0] in train_items]
        if len(kept) >= 2:
            test[session] = kept

    test_sessions = sorted(test)
    cuts = draw_cut_points(np.array([len(test[s]) for s in test_sessions], dtype=np.int64), seed)
    inputs, labels = [], []
    for session, k in zip(test_sessions, cuts, strict=True):
        events = test[session]
        inputs.extend((session, aid, ts, t) for aid, ts, t in events[:k])
        next_click = None
        carts: set[int] = set()
        orders: set[int] = set()
        for aid, _, event_type in events[k:]:
            if event_type == CLICK and next_click is None:
                next_click = aid
            elif event_type == CART:
                carts.add(aid)
            elif event_type == ORDER:
                orders.add(aid)
        if next_click is not None:
            labels.append((session, CLICK, next_click))
        labels.extend((session, CART, aid) for aid in sorted(carts))
        labels.extend((session, ORDER, aid) for aid in sorted(orders))
    train_rows = [(s, aid, ts, t) for s in sorted(train) for aid, ts, t in train[s]]
    return train_rows, inputs, labels, split_ts


def random_rows(rng: np.random.Generator, n_sessions: int) -> list[tuple[int, int, int, int]]:
    """Sessions spread over 4 weeks, ties in ts, a small catalogue (aid 0 included) so that some test
    items are unknown to train, random lengths including 1."""
    rows = []
    horizon = 28 * MS_PER_DAY
    session_ids = np.sort(rng.choice(10 * n_sessions, size=n_sessions, replace=False))
    for session in session_ids:
        n = int(rng.integers(1, 14))
        ts = int(rng.integers(0, horizon))
        for _ in range(n):
            step = 0 if rng.random() < 0.15 else int(rng.exponential(3 * MS_PER_DAY / 10))
            ts += step
            aid = int(rng.integers(0, 90)) if rng.random() < 0.9 else int(rng.integers(90, 400))
            event_type = int(rng.choice(3, p=[0.7, 0.2, 0.1]))
            rows.append((int(session), aid, 1_650_000_000_000 + ts, event_type))
    return rows


@pytest.mark.parametrize("seed", [0, 1, 7, 42])
def test_split_matches_reference_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    rows = random_rows(rng, 400)
    result = split_events(event_table(rows), test_days=7, seed=seed)
    train_rows, input_rows, label_rows, split_ts = reference_split(rows, 7, seed)

    assert result.split_ts == split_ts
    assert len(input_rows) > 50 and len(label_rows) > 50  # the data exercises the test side
    assert rows_of(result.train) == train_rows
    assert rows_of(result.test_inputs) == input_rows
    assert rows_of(result.test_labels) == label_rows
    assert result.stats()["test_sessions"] == len({r[0] for r in input_rows})


def test_split_matches_reference_with_other_test_days() -> None:
    rows = random_rows(np.random.default_rng(5), 300)
    for test_days in (1, 3, 14):
        result = split_events(event_table(rows), test_days=test_days, seed=3)
        train_rows, input_rows, label_rows, _ = reference_split(rows, test_days, 3)
        assert rows_of(result.train) == train_rows
        assert rows_of(result.test_inputs) == input_rows
        assert rows_of(result.test_labels) == label_rows


# ---------------------------------------------------------------------------------------------------
# Hand-made sessions: one per rule / edge case.  max_ts = day 30, so split_ts = day 23 (test_days=7).
# ---------------------------------------------------------------------------------------------------
D = MS_PER_DAY
SPLIT = 23 * D

HAND_ROWS = [
    # 1: ordinary train session (also makes aids 0, 10, 11, 12 known)
    (1, 10, 1 * D, CLICK),
    (1, 11, 2 * D, CLICK),
    (1, 12, 3 * D, CART),
    (1, 0, 4 * D, CLICK),
    # 2: first event exactly at split time -> not test; trimmed to ts < split -> 0 events -> gone
    (2, 10, SPLIT, CLICK),
    (2, 11, SPLIT + 1000, CLICK),
    # 3: crosses the split -> trimmed to its 2 events before the split
    (3, 11, SPLIT - 2, CLICK),
    (3, 12, SPLIT - 1, CLICK),
    (3, 10, SPLIT, CLICK),
    (3, 13, SPLIT + 5, CLICK),
    # 4: trimmed to 1 event -> dropped
    (4, 10, SPLIT - 5, CLICK),
    (4, 11, SPLIT + 5, CLICK),
    # 5: test (starts 1 ms after split); unknown aid 999 removed, 2 events remain -> cut after 1
    (5, 10, SPLIT + 1, CLICK),
    (5, 999, SPLIT + 2, CLICK),
    (5, 11, SPLIT + 3, CLICK),
    # 6: test; unknown aid removed leaves 1 event -> dropped
    (6, 10, 24 * D, CLICK),
    (6, 999, 24 * D + 1, CLICK),
    # 7: test; next click is on aid 0 (an ordinary item here)
    (7, 10, 25 * D, CLICK),
    (7, 0, 25 * D + 1, CLICK),
    # 8: test; no future click, only a cart
    (8, 10, 26 * D, CLICK),
    (8, 11, 26 * D + 1, CART),
    # 9: test; repeated later carts on one aid -> one label row whatever the cut
    (9, 12, 27 * D, CLICK),
    (9, 11, 27 * D + 1, CART),
    (9, 11, 27 * D + 2, CART),
    (9, 11, 27 * D + 3, CART),
    # 10: test; holds max_ts
    (10, 10, 29 * D, CLICK),
    (10, 12, 30 * D, CLICK),
]


def test_hand_made_rules() -> None:
    result = split_events(event_table(HAND_ROWS), test_days=7, seed=123)
    assert result.max_ts == 30 * D
    assert result.split_ts == SPLIT

    assert rows_of(result.train) == [
        (1, 10, 1 * D, CLICK), (1, 11, 2 * D, CLICK), (1, 12, 3 * D, CART), (1, 0, 4 * D, CLICK),
        (3, 11, SPLIT - 2, CLICK), (3, 12, SPLIT - 1, CLICK),
    ]  # fmt: skip
    inputs = result.test_inputs
    assert sorted(set(inputs["session"].to_list())) == [5, 7, 8, 9, 10]
    assert rows_of(inputs.filter(pl.col("session") != 9)) == [
        (5, 10, SPLIT + 1, CLICK),
        (7, 10, 25 * D, CLICK),
        (8, 10, 26 * D, CLICK),
        (10, 10, 29 * D, CLICK),
    ]
    session9 = rows_of(inputs.filter(pl.col("session") == 9))
    assert 1 <= len(session9) <= 3
    assert session9 == [r for r in HAND_ROWS if r[0] == 9][: len(session9)]

    assert rows_of(result.test_labels) == [
        (5, CLICK, 11),  # the unknown aid 999 in between is gone
        (7, CLICK, 0),  # aid 0 is a real next click (official code would drop it)
        (8, CART, 11),  # no click label
        (9, CART, 11),  # three later carts of aid 11 -> one label
        (10, CLICK, 12),
    ]
    stats = result.stats()
    assert stats["sessions"] == 10
    assert stats["train_sessions"] == 2
    assert stats["train_sessions_dropped_short"] == 2  # sessions 2 and 4
    assert stats["test_sessions_full"] == 6  # 5..10
    assert stats["test_events_unknown_aid"] == 2
    assert stats["test_sessions_dropped_short"] == 1  # session 6
    assert stats["test_sessions"] == 5
    assert stats["label_sessions_clicks"] == 3
    assert stats["label_rows_carts"] == 2
    assert stats["label_rows_orders"] == 0


def test_unknown_aid_seen_only_in_dropped_train_session_is_unknown() -> None:
    # aid 77 only occurs in a train session trimmed to 1 event, so it is not a train item.
    rows = [
        (1, 10, 1 * D, CLICK), (1, 11, 2 * D, CLICK),
        (2, 77, SPLIT - 1, CLICK), (2, 10, SPLIT + 1, CLICK),
        (3, 10, 25 * D, CLICK), (3, 77, 25 * D + 1, CLICK), (3, 11, 30 * D, CLICK),
    ]  # fmt: skip
    result = split_events(event_table(rows), test_days=7, seed=0)
    assert rows_of(result.test_inputs) == [(3, 10, 25 * D, CLICK)]
    assert rows_of(result.test_labels) == [(3, CLICK, 11)]


def test_labels_cover_everything_after_the_cut() -> None:
    rows = [
        (1, 1, 1 * D, CLICK), (1, 2, 1 * D + 1, CLICK), (1, 3, 1 * D + 2, CLICK),
        (1, 4, 1 * D + 3, CLICK), (1, 5, 1 * D + 4, CLICK),
        (2, 1, 25 * D, CLICK), (2, 2, 25 * D, CART), (2, 3, 25 * D + 1, ORDER), (2, 2, 25 * D + 1, ORDER),
        (2, 4, 25 * D + 2, CLICK), (2, 5, 25 * D + 3, CLICK), (2, 3, 30 * D, CART),
    ]  # fmt: skip
    by_cut: dict[int, list[tuple]] = {}
    for seed in range(60):
        result = split_events(event_table(rows), test_days=7, seed=seed)
        k = result.test_inputs.height
        by_cut[k] = rows_of(result.test_labels)
    assert set(by_cut) == {1, 2, 3, 4, 5, 6}  # every cut point is reachable
    assert by_cut[1] == [(2, CLICK, 4), (2, CART, 2), (2, CART, 3), (2, ORDER, 2), (2, ORDER, 3)]
    assert by_cut[2] == [(2, CLICK, 4), (2, CART, 3), (2, ORDER, 2), (2, ORDER, 3)]
    assert by_cut[3] == [(2, CLICK, 4), (2, CART, 3), (2, ORDER, 2)]
    assert by_cut[4] == [(2, CLICK, 4), (2, CART, 3)]
    assert by_cut[5] == [(2, CLICK, 5), (2, CART, 3)]
    assert by_cut[6] == [(2, CART, 3)]


def test_determinism_by_seed() -> None:
    frame = event_table(random_rows(np.random.default_rng(9), 300))
    a = split_events(frame, seed=11)
    b = split_events(frame, seed=11)
    c = split_events(frame, seed=12)
    assert a.test_inputs.equals(b.test_inputs) and a.test_labels.equals(b.test_labels)
    assert a.train.equals(c.train)  # the seed only moves the cut
    assert not a.test_inputs.equals(c.test_inputs)


def test_draw_cut_points() -> None:
    n = np.array([2, 3, 10, 2, 50] * 200)
    k = draw_cut_points(n, seed=5)
    assert k.shape == n.shape
    assert np.all(k >= 1) and np.all(k <= n - 1)
    assert np.all(k[n == 2] == 1)
    assert set(k[n == 3].tolist()) == {1, 2}
    assert np.array_equal(k, draw_cut_points(n, seed=5))
    assert not np.array_equal(k, draw_cut_points(n, seed=6))
    with pytest.raises(ValueError, match=">= 2 events"):
        draw_cut_points(np.array([3, 1]), seed=0)


def test_input_order_and_string_types_are_normalised() -> None:
    rows = random_rows(np.random.default_rng(3), 120)
    frame = event_table(rows)
    shuffled = frame.with_row_index("pos").sample(fraction=1.0, shuffle=True, seed=1)
    # Shuffle rows between sessions but keep each session's own order: sort by (session desc, pos).
    reordered = shuffled.sort(["session", "pos"], descending=[True, False]).drop("pos")
    as_strings = reordered.with_columns(
        pl.col("type").replace_strict({0: "clicks", 1: "carts", 2: "orders"}, return_dtype=pl.String)
    )
    a = split_events(frame, seed=4)
    b = split_events(as_strings, seed=4)
    assert a.train.equals(b.train)
    assert a.test_inputs.equals(b.test_inputs)
    assert a.test_labels.equals(b.test_labels)


def test_output_schema() -> None:
    result = split_events(event_table(HAND_ROWS), seed=0)
    event_schema = {"session": pl.Int32, "aid": pl.Int32, "ts": pl.Int64, "type": pl.Int8}
    assert dict(result.train.schema) == event_schema
    assert dict(result.test_inputs.schema) == event_schema
    assert dict(result.test_labels.schema) == {"session": pl.Int32, "type": pl.Int8, "aid": pl.Int32}


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pl.DataFrame({"session": [1], "aid": [2], "ts": [3]}), r"missing column\(s\) \['type'\]"),
        (
            pl.DataFrame({"session": [1, 1], "aid": [2, None], "ts": [3, 4], "type": [0, 0]}),
            "row 1, field 'aid'",
        ),
        (
            pl.DataFrame({"session": [1, 1], "aid": [2, 3], "ts": [3, 4], "type": [0, 5]}),
            "row 1, field 'type'",
        ),
        (
            pl.DataFrame({"session": [1, 2**40], "aid": [2, 3], "ts": [3, 4], "type": [0, 1]}),
            "row 1, field 'session'",
        ),
        (
            pl.DataFrame({"session": [1, 1], "aid": [2, 3], "ts": [3, 4], "type": ["clicks", "view"]}),
            "'view'",
        ),
    ],
)
def test_bad_input_is_rejected(frame: pl.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        as_event_table(frame)


def test_labels_to_official_json() -> None:
    labels = pl.DataFrame(
        {"session": [3, 3, 3, 3, 5, 8], "type": [2, 0, 1, 1, 1, 0], "aid": [7, 4, 9, 2, 1, 0]},
        schema={"session": pl.Int32, "type": pl.Int8, "aid": pl.Int32},
    )
    assert labels_to_official_json(labels) == [
        {"session": 3, "labels": {"clicks": 4, "carts": [2, 9], "orders": [7]}},
        {"session": 5, "labels": {"carts": [1]}},
        {"session": 8, "labels": {"clicks": 0}},
    ]
    two_clicks = labels.with_columns(pl.lit(0, pl.Int8).alias("type"))
    with pytest.raises(ValueError, match="click labels"):
        labels_to_official_json(two_clicks)


# ---------------------------------------------------------------------------------------------------
# Real OTTO sample (the official repository's test resource).
# ---------------------------------------------------------------------------------------------------
def read_sample(path: Path) -> pl.DataFrame:
    rows = []
    with path.open() as handle:
        for line in handle:
            record = json.loads(line)
            for event in record["events"]:
                rows.append((record["session"], event["aid"], event["ts"], event["type"]))
    return pl.DataFrame(
        rows, schema={"session": pl.Int32, "aid": pl.Int32, "ts": pl.Int64, "type": pl.String}, orient="row"
    )


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"OTTO sample not found at {SAMPLE}")
def test_real_sample_official_counts() -> None:
    events = read_sample(SAMPLE)
    assert events.height == 862 and events["session"].n_unique() == 20
    result = split_events(events, test_days=7, seed=42)
    stats = result.stats()
    split_ts = result.split_ts
    assert result.train["session"].n_unique() == 10
    assert result.train["ts"].max() < split_ts
    # The official unit test's 8 test sessions are counted AFTER the unknown-item filter
    # (filter_unknown_items runs inside train_test_split): 10 sessions start after the split,
    # 2 of them fall below 2 events once items unseen in train are removed.  (The official test
    # passes max_ts=1661723994936, 2.9 s before the file's last event; both give 10 / 10 / 8.)
    assert stats["test_sessions_full"] == 10
    assert stats["test_sessions"] == 8
    assert stats["test_sessions_dropped_short"] == 2
    train_items = set(result.train["aid"].to_list())
    assert set(result.test_inputs["aid"].to_list()) <= train_items
    assert set(result.test_labels["aid"].to_list()) <= train_items
    assert result.test_inputs["ts"].min() > split_ts
    # Same result as the plain per-session reference on real data.
    rows = [(s, a, t, {"clicks": 0, "carts": 1, "orders": 2}[y]) for s, a, t, y in events.iter_rows()]
    train_rows, input_rows, label_rows, _ = reference_split(rows, 7, 42)
    assert rows_of(result.train) == train_rows
    assert rows_of(result.test_inputs) == input_rows
    assert rows_of(result.test_labels) == label_rows


def test_split_node_stops_when_no_test_sessions_remain() -> None:
    """test_days longer than the data: every session is a test session, none has known items."""
    rows = [
        (s, 10 + s % 3, MS_PER_DAY * 2 + s * 3_600_000 + i * 1000, CLICK) for s in range(6) for i in range(3)
    ]
    events = event_table(rows)
    with pytest.raises(
        ValueError, match=r"split.test_days=7 leaves no local test sessions: the data spans 0\.21 days"
    ):
        split_local_validation(events, {"test_days": 7, "seed": 0})
    # test_days=0 (train on everything, no local evaluation) is allowed: a warning, no error
    train, test_inputs, labels, _ = split_local_validation(events, {"test_days": 0, "seed": 0})
    assert test_inputs.is_empty() and labels.is_empty() and train["session"].n_unique() == 6

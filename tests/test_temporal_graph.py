"""Temporal graph construction against a plain dict-of-lists reference."""

from __future__ import annotations

import logging
import pickle
from collections import defaultdict

import numpy as np
import polars as pl
import pytest

from gnn_recsys.graph.temporal_graph import AppendedArray, TemporalGraph, build_temporal_graph


def random_events(seed: int, n_sessions: int = 40, n_items: int = 25, max_len: int = 12) -> pl.DataFrame:
    """Events in shuffled row order, with repeated aids, ties in ts and sparse ids."""
    rng = np.random.default_rng(seed)
    session_ids = rng.choice(10_000, size=n_sessions, replace=False)
    aids = rng.choice(1_000_000, size=n_items, replace=False)
    rows = []
    for session in session_ids:
        t = int(rng.integers(1_659_304_800_000, 1_659_304_800_000 + 10_000_000))
        for _ in range(int(rng.integers(1, max_len + 1))):
            t += int(rng.choice([0, 0, 1, 500, 90_000]))  # many exact ties
            rows.append((int(session), int(rng.choice(aids)), t, int(rng.integers(0, 3))))
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    return pl.DataFrame(
        rows, schema={"session": pl.Int32, "aid": pl.Int32, "ts": pl.Int64, "type": pl.Int8}, orient="row"
    )


def reference_graph(events: pl.DataFrame) -> dict:
    """Session-order event list and item lists built with plain Python."""
    by_session: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
    for row, (session, aid, ts, etype) in enumerate(events.iter_rows()):
        by_session[session].append((ts, row, aid, etype))
    session_order = []  # (session, aid, ts, type)
    for session in sorted(by_session):
        for ts, _row, aid, etype in sorted(by_session[session]):  # ties: input row order
            session_order.append((session, aid, ts, etype))
    by_aid: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for event, (_session, aid, ts, _etype) in enumerate(session_order):
        by_aid[aid].append((ts, event))
    return {
        "sessions": sorted(by_session),
        "lengths": [len(by_session[s]) for s in sorted(by_session)],
        "events": session_order,
        "items": {aid: [event for _ts, event in sorted(lst)] for aid, lst in by_aid.items()},
    }


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_graph_matches_dict_of_lists_reference(seed: int) -> None:
    events = random_events(seed)
    ref = reference_graph(events)
    graph = build_temporal_graph(events)
    graph.validate()

    assert graph.session_id.tolist() == ref["sessions"]
    assert np.diff(graph.session_ptr).tolist() == ref["lengths"]
    got = list(
        zip(
            np.repeat(graph.session_id, np.diff(graph.session_ptr)).tolist(),
            graph.item_aid[graph.ev_item].tolist(),
            graph.ev_ts.tolist(),
            graph.ev_type.tolist(),
            strict=True,
        )
    )
    assert got == ref["events"]
    assert graph.item_aid.tolist() == sorted(ref["items"])

    session_of_event = [ref["sessions"].index(s) for s, *_ in ref["events"]]
    starts = np.cumsum([0, *ref["lengths"]])
    for index, aid in enumerate(graph.item_aid.tolist()):
        rows = slice(graph.item_ptr[index], graph.item_ptr[index + 1])
        expected_events = ref["items"][aid]
        assert graph.item_event[rows].tolist() == expected_events
        assert graph.item_ts[rows].tolist() == [ref["events"][e][2] for e in expected_events]
        assert graph.item_session[rows].tolist() == [session_of_event[e] for e in expected_events]
        ranks = [e - starts[session_of_event[e]] for e in expected_events]
        remaining = [starts[session_of_event[e] + 1] - 1 - e for e in expected_events]
        assert graph.item_session_rank[rows].tolist() == ranks
        assert graph.item_session_remaining[rows].tolist() == remaining
    assert np.array_equal(graph.item_event[graph.ev_item_pos], np.arange(graph.num_events))


def test_presorted_input_gives_same_graph_as_shuffled() -> None:
    events = random_events(7)
    shuffled = build_temporal_graph(events)
    presorted = build_temporal_graph(events.with_row_index().sort(["session", "ts", "index"]).drop("index"))
    for name, array in shuffled.arrays().items():
        assert np.array_equal(array, getattr(presorted, name)), name


def test_fixed_item_vocabulary_shares_indices_and_keeps_empty_items() -> None:
    events = random_events(3)
    present = np.unique(events["aid"].to_numpy())
    vocabulary = np.random.default_rng(0).permutation(np.concatenate([present, [5_000_001, 5_000_002]]))
    graph = build_temporal_graph(events, item_aids=vocabulary)
    graph.validate()
    assert np.array_equal(graph.item_aid, vocabulary)
    plain = build_temporal_graph(events)
    assert np.array_equal(graph.item_aid[graph.ev_item], plain.item_aid[plain.ev_item])
    empty = np.isin(vocabulary, [5_000_001, 5_000_002])
    assert np.all(graph.item_degrees()[empty] == 0)
    assert np.all(graph.item_degrees()[~empty] > 0)


def test_unknown_aid_raises_or_is_dropped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    events = random_events(4)
    aids = np.unique(events["aid"].to_numpy())
    vocabulary = aids[1:]
    dropped_aid = int(aids[0])
    n_dropped = int((events["aid"] == dropped_aid).sum())
    with pytest.raises(ValueError, match=str(dropped_aid)):
        build_temporal_graph(events, item_aids=vocabulary)
    with caplog.at_level(logging.WARNING):
        graph = build_temporal_graph(events, item_aids=vocabulary, unknown_aids="drop")
    assert f"dropped {n_dropped} event(s)" in caplog.text
    assert graph.num_events == events.height - n_dropped
    with pytest.raises(ValueError, match="duplicate"):
        build_temporal_graph(events, item_aids=np.concatenate([aids, aids[:1]]))


def test_bad_event_tables_are_rejected_with_the_field() -> None:
    events = random_events(5)
    with pytest.raises(ValueError, match="'aid'"):
        build_temporal_graph(events.drop("aid"))
    with_null = events.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("ts")).alias("ts")
    )
    with pytest.raises(ValueError, match=r"'ts'.*row 3"):
        build_temporal_graph(with_null)
    bad_type = events.with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(7).otherwise(pl.col("type")).alias("type")
    )
    with pytest.raises(ValueError, match=r"'type'.*7.*row 2"):
        build_temporal_graph(bad_type)


def test_lookups_map_ids_and_reject_unknown() -> None:
    graph = build_temporal_graph(random_events(6))
    order = np.random.default_rng(1).permutation(graph.num_items)
    assert np.array_equal(graph.aid_to_index(graph.item_aid[order]), order)
    assert np.array_equal(
        graph.session_to_index(pl.Series(graph.session_id[::-1])), np.arange(graph.num_sessions)[::-1]
    )
    with pytest.raises(KeyError, match="1234567"):
        graph.aid_to_index([int(graph.item_aid[0]), 1_234_567])
    assert graph.session_to_index([-5], missing=-1).tolist() == [-1]


def test_stats_count_what_they_say() -> None:
    events = random_events(8)
    graph = build_temporal_graph(events)
    stats = graph.stats()
    lengths = events.group_by("session").len()["len"].to_numpy()
    assert stats["num_events"] == events.height
    assert stats["num_sessions"] == events["session"].n_unique()
    assert stats["num_items"] == events["aid"].n_unique()
    assert stats["session_length_max"] == lengths.max()
    assert stats["session_length_mean"] == pytest.approx(lengths.mean())
    assert stats["item_degree_max"] == events.group_by("aid").len()["len"].max()
    for code, name in enumerate(("clicks", "carts", "orders")):
        assert stats[f"events_{name}"] == (events["type"] == code).sum()
    assert stats["time_span_days"] == pytest.approx((events["ts"].max() - events["ts"].min()) / 86_400_000)


def test_save_load_mmap_and_pickle_by_path(tmp_path) -> None:
    graph = build_temporal_graph(random_events(9))
    graph.save(tmp_path / "g")
    loaded = TemporalGraph.load(tmp_path / "g")
    assert isinstance(loaded.ev_ts, np.memmap)
    for name, array in graph.arrays().items():
        assert np.array_equal(array, getattr(loaded, name)), name
        assert array.dtype == getattr(loaded, name).dtype
    blob = pickle.dumps(loaded)
    assert len(blob) < 2_000  # the path travels, not the arrays
    again = pickle.loads(blob)
    assert np.array_equal(again.item_view, graph.item_view)
    in_memory = pickle.loads(pickle.dumps(graph))
    assert np.array_equal(in_memory.ev_item, graph.ev_item)
    with pytest.raises(FileNotFoundError):
        TemporalGraph.load(tmp_path / "missing")


def test_validate_detects_broken_order() -> None:
    graph = build_temporal_graph(random_events(11))
    broken = TemporalGraph(**{**graph.arrays(), "ev_ts": graph.ev_ts[::-1].copy()})
    with pytest.raises(ValueError, match="time-sorted"):
        broken.validate()


def test_empty_event_table_builds_an_empty_graph() -> None:
    empty = pl.DataFrame(schema={"session": pl.Int32, "aid": pl.Int32, "ts": pl.Int64, "type": pl.Int8})
    graph = build_temporal_graph(empty)
    graph.validate()
    assert (graph.num_sessions, graph.num_items, graph.num_events) == (0, 0, 0)


def test_appended_array_reads_as_the_concatenation() -> None:
    rng = np.random.default_rng(3)
    base, tail = rng.integers(0, 1000, 50).astype(np.int32), rng.integers(0, 1000, 7)
    lazy, joined = AppendedArray(base, tail), np.concatenate([base, tail.astype(np.int32)])
    assert len(lazy) == 57 and lazy.shape == (57,) and lazy.dtype == np.int32
    for index in (rng.integers(0, 57, 40), rng.integers(0, 50, 40), rng.integers(50, 57, (3, 4))):
        np.testing.assert_array_equal(lazy[index], joined[index])
        np.testing.assert_array_equal(np.take(lazy, index), joined[index])
    assert lazy[49] == joined[49] and lazy[50] == joined[50] and lazy[-1] == joined[-1]
    np.testing.assert_array_equal(lazy[45:], joined[45:])
    np.testing.assert_array_equal(np.asarray(lazy), joined)
    # Unchecked gathers (the sampler's probes past a segment) clamp instead of failing.
    np.testing.assert_array_equal(lazy.take(np.array([3, 56, 60]), mode="clip"), joined[[3, 56, 56]])
    with pytest.raises(IndexError):
        lazy.take(np.array([57]))
    with pytest.raises(IndexError, match="out of bounds"):
        lazy[57]

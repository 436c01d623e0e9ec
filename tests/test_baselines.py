"""Tests for the popularity and co-visitation baselines."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from gnn_recsys.baselines.covisitation import CovisitationConfig, CovisitationModel, _chunk_row_ranges
from gnn_recsys.baselines.popularity import PopularityModel
from gnn_recsys.data.schema import CART, CLICK, MS_PER_DAY, ORDER
from gnn_recsys.data.split import split_events
from gnn_recsys.evaluation.metrics import evaluate
from gnn_recsys.export.candidates import CANDIDATE_SCHEMA

HOUR = 3_600_000
T0 = 1_659_304_800_000


def event_table(rows: list[tuple[int, int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"session": pl.Int32, "aid": pl.Int32, "ts": pl.Int64, "type": pl.Int8},
        orient="row",
    )


def neighbour_lists(model: CovisitationModel) -> dict[int, list[tuple[int, float]]]:
    lists: dict[int, list[tuple[int, float]]] = {}
    for aid, neighbour, weight in model.neighbours.iter_rows():
        lists.setdefault(aid, []).append((neighbour, pytest.approx(weight)))
    return lists


def ranked(candidates: pl.DataFrame, session: int) -> list[int]:
    return candidates.filter(pl.col("session") == session).sort("rank")["aid"].to_list()


A, B, C, D, E = 1, 2, 3, 4, 5
HAND_EVENTS = [
    (1, A, T0, CLICK), (1, B, T0 + 1, CLICK), (1, C, T0 + 2, CART),
    (2, A, T0 + 10, CLICK), (2, B, T0 + 11, CLICK),
    (3, A, T0 + 20, CLICK), (3, D, T0 + 21, CLICK), (3, D, T0 + 22, CLICK),
    (4, A, T0 + 30, CLICK), (4, C, T0 + 31, CLICK),
    (5, A, T0 + 40, CLICK), (5, E, T0 + 40 + 48 * HOUR, CLICK),  # 2 days apart: outside the window
]  # fmt: skip
FLAT_TIME = CovisitationConfig(time_weight_min=1.0, time_weight_max=1.0, top_neighbours=2)


def test_covisitation_weights_by_hand() -> None:
    model = CovisitationModel.fit(event_table(HAND_EVENTS), FLAT_TIME)
    # A -> B: click in s1 and s2 = 1 + 1; A -> C: cart in s1 (6) + click in s4 (1) = 7;
    # A -> D: twice in s3 but once per session = 1 (cut by top 2); A -> E outside the 24 h window.
    # B -> A: 1 + 1; B -> C: 6.  C -> A: 1 + 1; C -> B: 1.  D -> A: 1 (D -> D is not a pair).
    assert neighbour_lists(model) == {
        A: [(C, 7.0), (B, 2.0)],
        B: [(C, 6.0), (A, 2.0)],
        C: [(A, 2.0), (B, 1.0)],
        D: [(A, 1.0)],
    }
    wide = CovisitationModel.fit(event_table(HAND_EVENTS), CovisitationConfig(
        time_weight_min=1.0, time_weight_max=1.0, top_neighbours=5, time_window_ms=72 * HOUR
    ))  # fmt: skip
    assert neighbour_lists(wide)[A] == [(C, 7.0), (B, 2.0), (D, 1.0), (E, 1.0)]
    assert neighbour_lists(wide)[E] == [(A, 1.0)]


def test_covisitation_recency_weight() -> None:
    span = 10 * MS_PER_DAY
    rows = [
        (1, A, T0, CLICK), (1, B, T0 + 1000, CLICK),  # early
        (2, A, T0 + span - 1000, CLICK), (2, C, T0 + span, CLICK),  # late
    ]  # fmt: skip
    model = CovisitationModel.fit(
        event_table(rows), CovisitationConfig(time_weight_min=1.0, time_weight_max=4.0)
    )
    # weight = 1 + 3 * (ts of the neighbour - first ts) / (last ts - first ts)
    assert neighbour_lists(model)[A] == [(C, 4.0), (B, 1.0 + 3.0 * 1000 / span)]
    assert neighbour_lists(model)[C] == [(A, 1.0 + 3.0 * (span - 1000) / span)]


def test_only_last_events_of_a_session_form_pairs() -> None:
    rows = [(1, 10, T0, CLICK), (1, 11, T0 + 1, CLICK), (1, 12, T0 + 2, CLICK)]
    model = CovisitationModel.fit(event_table(rows), CovisitationConfig(max_events_per_session=2))
    assert set(model.neighbours.select("aid", "neighbour").iter_rows()) == {(11, 12), (12, 11)}


def test_chunking_and_partitions_do_not_change_the_result() -> None:
    events = planted_events(np.random.default_rng(0), n_sessions=300)
    base = CovisitationModel.fit(events, CovisitationConfig(top_neighbours=10))
    chunked = CovisitationModel.fit(
        events, CovisitationConfig(top_neighbours=10, max_pairs_per_chunk=50, aid_partitions=3)
    )
    assert base.neighbours.height > 500
    assert chunked.neighbours["aid"].to_list() == base.neighbours["aid"].to_list()
    assert chunked.neighbours["neighbour"].to_list() == base.neighbours["neighbour"].to_list()
    np.testing.assert_allclose(
        chunked.neighbours["weight"].to_numpy(), base.neighbours["weight"].to_numpy(), rtol=1e-6
    )
    auto = CovisitationModel.fit(
        events, CovisitationConfig(top_neighbours=10, max_joined_rows_per_partition=1000)
    )
    assert auto.neighbours.select("aid", "neighbour").equals(base.neighbours.select("aid", "neighbour"))
    queries = events.filter(pl.col("session") < 40)
    small_chunks = CovisitationModel(
        chunked.neighbours, chunked.popularity, CovisitationConfig(sessions_per_recommend_chunk=7)
    )
    assert small_chunks.recommend(queries, 20).equals(base.recommend(queries, 20))


def test_chunk_row_ranges_keep_sessions_whole() -> None:
    lengths = np.array([3, 1, 4, 2, 2, 5, 1])
    ranges = list(_chunk_row_ranges(lengths, max_pairs=10))
    offsets = [o for o, _ in ranges]
    assert offsets[0] == 0
    assert [o + n for o, n in ranges[:-1]] == offsets[1:]  # contiguous
    assert sum(n for _, n in ranges) == lengths.sum()  # complete
    boundaries = set(np.cumsum(lengths).tolist()) | {0}
    assert set(offsets) <= boundaries  # every chunk starts at a session start
    assert len(ranges) > 1
    # each chunk: the pairs of all but its last session stay within the budget
    for offset, count in ranges:
        first = int(np.searchsorted(np.cumsum(lengths) - lengths, offset))
        last = int(np.searchsorted(np.cumsum(lengths), offset + count))
        assert (lengths[first:last] ** 2).sum() <= 10


def test_recommend_by_hand() -> None:
    model = CovisitationModel.fit(event_table(HAND_EVENTS), FLAT_TIME)
    queries = event_table([
        (100, D, T0, CLICK), (100, B, T0 + 1, CLICK),
        (200, C, T0, CLICK), (200, C, T0 + 1, CLICK), (200, B, T0 + 2, CART), (200, A, T0 + 3, CLICK),
    ])  # fmt: skip
    candidates = model.recommend(queries, k=5)
    # Session 100: history B (last event) before D; co-visited C (6 from B) before A (2 from B +
    # 0.5**(1/5) * 1 from D); popularity fills with E (A appears 5 times, B/C/D twice, E once).
    assert ranked(candidates, 100) == [B, D, C, A, E]
    # Session 200 history: B = 0.5**(1/5) * 6 (cart), C = 0.5**(2/5) + 0.5**(3/5) (two clicks), A = 1.
    assert ranked(candidates, 200) == [B, C, A, D, E]
    scores = candidates.filter(pl.col("session") == 200).sort("rank")["score"].to_list()
    assert scores[:3] == pytest.approx([6 * 0.5**0.2, 0.5**0.4 + 0.5**0.6, 1.0])
    assert candidates.schema == CANDIDATE_SCHEMA
    assert candidates["model"].unique().to_list() == ["covisitation"]


def test_popularity_by_hand() -> None:
    events = event_table([
        (1, 7, T0, CLICK), (1, 8, T0 + 1, CLICK), (1, 8, T0 + 2, CLICK),
        (2, 9, T0, ORDER), (2, 7, T0 + 1, CLICK), (2, 6, T0 + 2, CART),
    ])  # fmt: skip
    plain = PopularityModel.fit(events)
    assert plain.top(4).rows() == [(7, 2.0), (8, 2.0), (6, 1.0), (9, 1.0)]  # ties: smaller aid first
    weighted = PopularityModel.fit(events, type_weights={CLICK: 1.0, CART: 3.0, ORDER: 10.0})
    assert weighted.top(2)["aid"].to_list() == [9, 6]
    candidates = weighted.recommend(event_table([(5, 1, T0, CLICK), (3, 2, T0, CLICK)]), k=3)
    assert candidates.schema == CANDIDATE_SCHEMA
    assert candidates.select("session", "rank", "aid").rows() == [
        (3, 1, 9), (3, 2, 6), (3, 3, 7), (5, 1, 9), (5, 2, 6), (5, 3, 7)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="lack event type"):
        PopularityModel.fit(events, type_weights={CLICK: 1.0})


def planted_events(rng: np.random.Generator, n_sessions: int, n_items: int = 300) -> pl.DataFrame:
    """Sessions of (item, successor(item)) pairs: each pair is always consecutive, pairs are random."""
    successor = rng.permutation(n_items)
    horizon = 28 * MS_PER_DAY
    rows = []
    for session in range(n_sessions):
        ts = T0 + int(rng.integers(0, horizon))
        for _ in range(int(rng.integers(1, 6))):
            first = int(rng.integers(0, n_items))
            for aid in (first, int(successor[first])):
                ts += int(rng.integers(1, 60_000))
                event_type = CART if rng.random() < 0.1 else CLICK
                rows.append((session, aid, ts, event_type))
    return event_table(rows)


def test_covisitation_beats_popularity_on_planted_transitions() -> None:
    events = planted_events(np.random.default_rng(1), n_sessions=3000)
    split = split_events(events, test_days=7, seed=0)
    fit_events = pl.concat([split.train, split.test_inputs])
    popularity = PopularityModel.fit(fit_events).recommend(split.test_inputs, k=20)
    covisitation = CovisitationModel.fit(fit_events).recommend(split.test_inputs, k=20)
    pop_metrics = evaluate(popularity, split.test_labels)
    covis_metrics = evaluate(covisitation, split.test_labels)
    assert split.stats()["test_sessions"] > 300
    # About half of the cuts end on a pair's first item, whose successor is then the next click.
    assert covis_metrics["recall@20_clicks"] > 0.45
    assert pop_metrics["recall@20_clicks"] < 0.2
    assert covis_metrics["score"] > pop_metrics["score"] + 0.2


@pytest.mark.parametrize("k", [1, 5, 20])
def test_candidates_are_complete_and_unique(k: int) -> None:
    events = planted_events(np.random.default_rng(2), n_sessions=400)
    queries = events.filter(pl.col("session") % 3 == 0)
    n_sessions = queries["session"].n_unique()
    for candidates in (
        CovisitationModel.fit(events).recommend(queries, k=k),
        PopularityModel.fit(events).recommend(queries, k=k),
    ):
        assert candidates.schema == CANDIDATE_SCHEMA
        assert candidates.height == n_sessions * k
        per_session = candidates.group_by("session").agg(
            pl.col("rank").sort().alias("ranks"), pl.col("aid").n_unique().alias("unique_aids")
        )
        assert per_session.height == n_sessions
        assert all(ranks == list(range(1, k + 1)) for ranks in per_session["ranks"].to_list())
        assert (per_session["unique_aids"] == k).all()


def test_history_items_come_first() -> None:
    events = planted_events(np.random.default_rng(3), n_sessions=200)
    queries = events.filter(pl.col("session") < 30)
    candidates = CovisitationModel.fit(events).recommend(queries, k=20)
    for session, group in queries.group_by("session"):
        history = set(group["aid"].to_list())
        top = ranked(candidates, session[0])[: len(history)]
        assert set(top) == history


def test_no_query_sessions_give_an_empty_candidates_table() -> None:
    events = event_table(HAND_EVENTS)
    no_queries = events.head(0)
    for model in (CovisitationModel.fit(events), PopularityModel.fit(events)):
        candidates = model.recommend(no_queries, k=5)
        assert candidates.schema == CANDIDATE_SCHEMA and candidates.height == 0

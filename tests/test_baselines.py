"""Tests for the popularity and co-visitation baselines."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from gnn_recsys.baselines.covisitation import (
    CandidateRerankConfig,
    CandidateRerankModel,
    CovisitationConfig,
    CovisitationModel,
    ListConfig,
    MatrixConfig,
    _chunk_row_ranges,
)
from gnn_recsys.baselines.popularity import PopularityModel
from gnn_recsys.baselines.recent_items import RecentItemsModel
from gnn_recsys.data.schema import CART, CLICK, MS_PER_DAY, ORDER
from gnn_recsys.data.split import split_events
from gnn_recsys.evaluation.metrics import evaluate
from gnn_recsys.export.candidates import CANDIDATE_SCHEMA, TYPED_CANDIDATE_SCHEMA
from gnn_recsys.fixed_point import SCORE_SCALE, exact_sum
from gnn_recsys.pipelines.baselines.nodes import recommend_covisitation

PROJECT = Path(__file__).resolve().parents[1]

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
    # fixed-point sums: the same weights to the last bit, however the pairs were summed
    assert chunked.neighbours.equals(base.neighbours)
    auto = CovisitationModel.fit(
        events, CovisitationConfig(top_neighbours=10, max_joined_rows_per_partition=1000)
    )
    assert auto.neighbours.equals(base.neighbours)
    queries = events.filter(pl.col("session") < 40)
    small_chunks = CovisitationModel(
        chunked.neighbours, chunked.popularity, CovisitationConfig(sessions_per_recommend_chunk=7)
    )
    assert small_chunks.recommend(queries, 20).equals(base.recommend(queries, 20))


def test_exact_sum_gives_one_total_in_every_row_order() -> None:
    rng = np.random.default_rng(0)
    values = rng.random(50) * 3
    orders = np.stack([rng.permutation(values) for _ in range(300)])
    assert len({sum(order) for order in orders.tolist()}) > 1  # float addition depends on the order
    frame = pl.LazyFrame({"order": np.repeat(np.arange(len(orders)), values.size), "value": orders.ravel()})
    for engine in ("in-memory", "streaming"):
        totals = frame.group_by("order").agg(exact_sum(pl.col("value"))).collect(engine=engine)
        assert totals["value"].n_unique() == 1, engine
        assert totals["value"][0] == pytest.approx(math.fsum(values), abs=values.size / SCORE_SCALE)


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


def test_recent_items_by_hand() -> None:
    events = event_table([
        (3, 7, T0, CLICK), (3, 8, T0 + 1, CART), (3, 7, T0 + 2, CLICK), (3, 9, T0 + 2, ORDER),
        (1, 5, T0, CLICK),
        (3, 6, T0 + 3, CLICK),
    ])  # fmt: skip
    candidates = RecentItemsModel().recommend(events, k=3)
    assert candidates.schema == CANDIDATE_SCHEMA
    # session 3 in file order: 7 8 7 9 6 -> last seen 6 (pos 4), 9 (3), 7 (2), 8 (1); k=3 drops 8
    assert candidates.select("session", "rank", "aid", "score").rows() == [
        (1, 1, 5, 0.0), (3, 1, 6, 0.0), (3, 2, 9, -1.0), (3, 3, 7, -2.0)
    ]  # fmt: skip
    assert candidates["model"].unique().to_list() == ["recent_items"]
    with pytest.raises(ValueError, match="k must be >= 1"):
        RecentItemsModel().recommend(events, k=0)


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


# ---------------------------------------------------------------------------- candidate_rerank variant

DAY = 24 * HOUR
RERANK_EVENTS = [
    (1, A, T0, CLICK), (1, B, T0 + 1, CLICK), (1, B, T0 + 2, CART), (1, C, T0 + 3, ORDER),
    (2, A, T0 + 10, CLICK), (2, B, T0 + 11, CLICK),
    (3, A, T0 + 20, CART), (3, C, T0 + 20 + 3 * DAY, CART),  # 3 days apart: only buy2buy pairs them
    (4, A, T0 + 30, CLICK), (4, D, T0 + 31, CLICK), (4, D, T0 + 32, CLICK),
]  # fmt: skip


def rerank_config(**overrides: object) -> CandidateRerankConfig:
    """The default matrices with flat time weights and 2 neighbours, and two hand-checkable lists."""
    matrices = {
        "clicks": MatrixConfig(time_weight_min=1.0, time_weight_max=1.0, top_neighbours=2),
        "carts_orders": MatrixConfig(weighting="type", top_neighbours=2),
        "buy2buy": MatrixConfig(
            types=(CART, ORDER), window_ms=14 * DAY, time_weight_max=1.0, top_neighbours=2
        ),
    }
    lists = {
        CLICK: ListConfig({"clicks": 1.0}, filler=CLICK, history_recency_start=0.1),
        ORDER: ListConfig(
            {"carts_orders": 1.0, "buy2buy": 1.0}, filler=ORDER, history_bonus={"buy2buy": 0.1},
            history_recency_start=0.5,
        ),
    }  # fmt: skip
    options: dict = {"matrices": matrices, "lists": lists, "neighbour_recency": False} | overrides
    return CandidateRerankConfig(**options)


def matrix_lists(model: CandidateRerankModel, name: str) -> dict[int, list[tuple[int, float]]]:
    lists: dict[int, list[tuple[int, float]]] = {}
    for aid, neighbour, weight in model.neighbours[name].iter_rows():
        lists.setdefault(aid, []).append((neighbour, pytest.approx(weight)))
    return lists


def typed_ranked(candidates: pl.DataFrame, session: int, event_type: int) -> list[int]:
    rows = candidates.filter((pl.col("session") == session) & (pl.col("type") == event_type))
    return rows.sort("rank")["aid"].to_list()


def test_rerank_matrices_by_hand() -> None:
    model = CandidateRerankModel.fit(event_table(RERANK_EVENTS), rerank_config())
    # clicks (once per session): A -> B in s1 and s2 = 2; A -> C (s1) = A -> D (s4) = 1, C wins the tie
    # (smaller aid); s3 is outside the 24 h window.  D -> D is not a pair.
    assert matrix_lists(model, "clicks") == {
        A: [(B, 2.0), (C, 1.0)], B: [(A, 2.0), (C, 1.0)], C: [(A, 1.0), (B, 1.0)], D: [(A, 1.0)]
    }  # fmt: skip
    # carts_orders (the neighbour's distinct event types in the session, summed): A -> B = s1 click + cart
    # (1 + 6) + s2 click (1) = 8; A -> C = order (3); D clicked twice in s4 counts one click.
    assert matrix_lists(model, "carts_orders") == {
        A: [(B, 8.0), (C, 3.0)], B: [(C, 3.0), (A, 2.0)], C: [(B, 7.0), (A, 1.0)], D: [(A, 1.0)]
    }  # fmt: skip
    # buy2buy: carts and orders only (B cart + C order in s1; A and C carted 3 days apart in s3).
    assert matrix_lists(model, "buy2buy") == {A: [(C, 1.0)], B: [(C, 1.0)], C: [(A, 1.0), (B, 1.0)]}
    short = replace(rerank_config().matrices["buy2buy"], window_ms=2 * DAY)
    narrow = CandidateRerankModel.fit(
        event_table(RERANK_EVENTS),
        CandidateRerankConfig(matrices={"buy2buy": short}, lists={CLICK: ListConfig({}, filler=CLICK)}),
    )
    assert matrix_lists(narrow, "buy2buy") == {B: [(C, 1.0)], C: [(B, 1.0)]}


def test_rerank_time_weight_uses_the_latest_pair_of_a_session() -> None:
    span = 10 * MS_PER_DAY
    mid = T0 + span // 2
    rows = [
        (1, A, T0, CLICK), (1, B, T0 + 1000, CLICK),
        (2, A, mid, CLICK), (2, B, mid + 1, CLICK), (2, B, mid + 2, CLICK),
        (3, A, T0 + span - 1000, CLICK), (3, B, T0 + span, CLICK),
    ]  # fmt: skip
    config = CandidateRerankConfig(
        matrices={"clicks": MatrixConfig()}, lists={CLICK: ListConfig({}, filler=CLICK)}
    )
    model = CandidateRerankModel.fit(event_table(rows), config)

    def weight(ts: int) -> float:  # 1 at the first timestamp, 4 at the last
        return 1.0 + 3.0 * (ts - T0) / span

    a_to_b = weight(T0 + 1000) + weight(mid + 2) + weight(T0 + span)
    b_to_a = weight(T0) + weight(mid) + weight(T0 + span - 1000)
    assert matrix_lists(model, "clicks") == {A: [(B, a_to_b)], B: [(A, b_to_a)]}


FILLER_EVENTS = [
    (900, 7, T0, CLICK), (900, 7, T0 + 1, CLICK), (900, 7, T0 + 2, CLICK), (900, 8, T0 + 3, CLICK),
    (900, 8, T0 + 4, CLICK), (901, 9, T0, ORDER), (901, 9, T0 + 1, ORDER), (901, 8, T0 + 2, ORDER),
]  # fmt: skip


def test_rerank_lists_by_hand() -> None:
    model = CandidateRerankModel.fit(
        event_table(RERANK_EVENTS), rerank_config(), filler_events=event_table(FILLER_EVENTS)
    )
    queries = event_table([(100, D, T0, CLICK), (100, A, T0 + 1, CART)])
    candidates = model.recommend(queries, k=7)
    assert candidates.schema == TYPED_CANDIDATE_SCHEMA
    # History (recency 2**(start + (1 - start) * position / (n - 1)) - 1 times type weight): A = 1 * 6
    # (cart, last), D = 2**start - 1 (click, first).  Clicks: A's clicks neighbours B (2/2 of the list's
    # top weight) and C (1/2) appear once each, B first by weight; fillers: the filler events' most
    # clicked (7, 8), then the most frequent of any type (9).
    assert typed_ranked(candidates, 100, CLICK) == [A, D, B, C, 7, 8, 9]
    clicks = candidates.filter(pl.col("type") == CLICK).sort("rank")["score"].to_list()
    assert clicks[:4] == pytest.approx([6.0, 2**0.1 - 1, 1.0, 1.0])
    # Orders: C appears in A's carts_orders list and in A's buy2buy list (A was carted) = 2, B once.
    assert typed_ranked(candidates, 100, ORDER) == [A, D, C, B, 9, 8, 7]
    orders = candidates.filter(pl.col("type") == ORDER).sort("rank")["score"].to_list()
    assert orders[:4] == pytest.approx([6.0, 2**0.5 - 1, 2.0, 1.0])
    assert set(candidates["type"].to_list()) == {CLICK, ORDER}  # no carts list configured


def test_rerank_neighbour_recency_and_weight_scores() -> None:
    queries = event_table([(400, B, T0, CLICK), (400, D, T0 + 1, CLICK)])
    events = event_table(RERANK_EVENTS)
    plain = CandidateRerankModel.fit(events, rerank_config()).recommend(queries, k=4)
    # clicks neighbours: B -> A, C and D -> A: A counted twice, C once
    clicks = plain.filter(pl.col("type") == CLICK).sort("rank")
    assert clicks["aid"].to_list() == [D, B, A, C]
    assert clicks["score"].to_list()[2:] == pytest.approx([2.0, 1.0])
    # with recency, each source counts by the recency of its last event: B (first) 2**0.1 - 1, D 1
    recent = CandidateRerankModel.fit(events, rerank_config(neighbour_recency=True)).recommend(queries, k=4)
    clicks = recent.filter(pl.col("type") == CLICK).sort("rank")
    assert clicks["score"].to_list()[2:] == pytest.approx([2**0.1 - 1 + 1.0, 2**0.1 - 1])
    # weight: factor * weight / the source list's top weight; B's list is A (2), C (1), D's list A (1)
    by_weight = rerank_config(
        lists={CLICK: ListConfig({"clicks": 1.0}, filler=CLICK, neighbour_score="weight")}
    )
    scores = CandidateRerankModel.fit(events, by_weight).recommend(queries, k=4).sort("rank")["score"]
    assert scores.to_list()[2:] == pytest.approx([1.0 + 1.0, 0.5])


def test_rerank_long_sessions_rank_history_with_the_bonus() -> None:
    queries = event_table([(200, A, T0, CART), (200, B, T0 + 1, CLICK), (200, D, T0 + 2, CLICK)])
    events = event_table(RERANK_EVENTS)
    bonus = ListConfig(
        {"carts_orders": 1.0, "buy2buy": 1.0}, filler=ORDER, history_bonus={"buy2buy": 2.0},
        history_recency_start=0.5,
    )  # fmt: skip
    history_a, history_b, history_d = 6 * (2**0.5 - 1), 2**0.75 - 1, 1.0
    # 3 distinct items < 20: history A, D, B, then C (in A's and B's carts_orders lists, A's buy2buy)
    short = CandidateRerankModel.fit(events, rerank_config(lists={ORDER: bonus})).recommend(queries, k=4)
    assert short["aid"].to_list() == [A, D, B, C]
    assert short["score"].to_list() == pytest.approx([history_a, history_d, history_b, 3.0])
    # 3 distinct items >= 3: C (buy2buy neighbour of the carted A) joins the history tier with 2 * 1
    long = rerank_config(lists={ORDER: bonus}, history_min_items=3)
    ranked_long = CandidateRerankModel.fit(events, long).recommend(queries, k=4)
    assert ranked_long["aid"].to_list() == [A, C, D, B]
    assert ranked_long["score"].to_list() == pytest.approx([history_a, 2.0, history_d, history_b])


def test_rerank_fillers_per_type() -> None:
    config = CandidateRerankConfig(
        matrices={"clicks": MatrixConfig()},
        lists={t: ListConfig({}, filler=t) for t in (CLICK, CART, ORDER)},
    )
    model = CandidateRerankModel.fit(
        event_table(RERANK_EVENTS), config, filler_events=event_table(FILLER_EVENTS)
    )
    candidates = model.recommend(event_table([(5, 42, T0, CLICK)]), k=3)
    assert typed_ranked(candidates, 5, CLICK) == [42, 7, 8]
    assert typed_ranked(candidates, 5, CART) == [42, 7, 8]  # no carts in the filler events: any type
    assert typed_ranked(candidates, 5, ORDER) == [42, 9, 8]
    # without filler events, the fitted events are counted (A: 5 events, B and C: 3 each)
    fitted = CandidateRerankModel.fit(event_table(RERANK_EVENTS), config)
    assert typed_ranked(fitted.recommend(event_table([(5, 42, T0, CLICK)]), k=4), 5, CLICK) == [42, A, B, D]


def test_rerank_chunking_and_partitions_do_not_change_the_result() -> None:
    events = planted_events(np.random.default_rng(0), n_sessions=300)
    base = CandidateRerankModel.fit(events)
    chunked = CandidateRerankModel.fit(
        events, CandidateRerankConfig(max_pairs_per_chunk=50, aid_partitions=3)
    )
    auto = CandidateRerankModel.fit(events, CandidateRerankConfig(max_joined_rows_per_partition=1000))
    for name, table in base.neighbours.items():
        assert table.height > 50, name
        for other in (chunked, auto):
            assert other.neighbours[name].equals(table)  # to the last bit (fixed-point sums)
    queries = events.filter(pl.col("session") < 40)
    small_chunks = CandidateRerankModel(
        chunked.neighbours, chunked.fillers, CandidateRerankConfig(sessions_per_recommend_chunk=7)
    )
    assert small_chunks.recommend(queries, 20).equals(base.recommend(queries, 20))


@pytest.mark.parametrize("k", [1, 20])
def test_rerank_lists_are_complete_unique_and_differ_by_type(k: int) -> None:
    events = planted_events(np.random.default_rng(2), n_sessions=400)
    queries = events.filter(pl.col("session") % 3 == 0)
    n_sessions = queries["session"].n_unique()
    candidates = CandidateRerankModel.fit(events, filler_events=queries).recommend(queries, k=k)
    assert candidates.schema == TYPED_CANDIDATE_SCHEMA
    assert candidates.height == 3 * n_sessions * k
    per_list = candidates.group_by("session", "type").agg(pl.col("rank").sort(), pl.col("aid").n_unique())
    assert all(ranks == list(range(1, k + 1)) for ranks in per_list["rank"].to_list())
    assert (per_list["aid"] == k).all()
    if k == 20:
        wide = candidates.pivot(on="type", index=["session", "rank"], values="aid")
        assert (wide[str(CLICK)] != wide[str(ORDER)]).any()
        assert (wide[str(CLICK)] != wide[str(CART)]).any()


def test_rerank_on_click_only_data() -> None:
    events = planted_events(np.random.default_rng(4), n_sessions=200).with_columns(
        pl.lit(CLICK, pl.Int8).alias("type")
    )
    model = CandidateRerankModel.fit(events)
    assert model.neighbours["buy2buy"].height == 0
    assert model.neighbours["clicks"].height > 0
    queries = events.filter(pl.col("session") < 20)
    candidates = model.recommend(queries, k=10)
    assert candidates.height == 3 * queries["session"].n_unique() * 10
    assert model.neighbour_table()["matrix"].unique().sort().to_list() == ["carts_orders", "clicks"]


def test_rerank_beats_legacy_clicks_and_popularity_on_planted_transitions() -> None:
    events = planted_events(np.random.default_rng(1), n_sessions=3000)
    split = split_events(events, test_days=7, seed=0)
    fit_events = pl.concat([split.train, split.test_inputs])
    popularity = evaluate(
        PopularityModel.fit(fit_events).recommend(split.test_inputs, k=20), split.test_labels
    )
    rerank = evaluate(
        CandidateRerankModel.fit(fit_events, filler_events=split.test_inputs).recommend(
            split.test_inputs, k=20
        ),
        split.test_labels,
    )
    assert rerank["recall@20_clicks"] > 0.45
    assert rerank["score"] > popularity["score"] + 0.2


def test_rerank_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"lists\[clicks\].neighbours: unknown matrix name\(s\) \['nope'\]"):
        CandidateRerankConfig.from_params(
            {"lists": {"clicks": {"neighbours": {"nope": 1.0}, "filler": "clicks"}}}
        )
    with pytest.raises(ValueError, match="unexpected keyword argument 'windw_ms'"):
        CandidateRerankConfig.from_params({"matrices": {"clicks": {"windw_ms": 1}}})
    with pytest.raises(ValueError, match="unknown event type 'views'"):
        CandidateRerankConfig.from_params({"matrices": {"clicks": {"types": ["views"]}}})
    with pytest.raises(ValueError, match="weighting must be one of"):
        MatrixConfig(weighting="rank")
    with pytest.raises(ValueError, match="neighbour_score must be one of"):
        ListConfig({}, filler=CLICK, neighbour_score="sum")


def test_node_variants_and_legacy_reproduction() -> None:
    params = yaml.safe_load((PROJECT / "conf" / "base" / "parameters_baselines.yml").read_text())[
        "covisitation"
    ]
    events = planted_events(np.random.default_rng(5), n_sessions=400)
    split = split_events(events, test_days=7, seed=0)
    today = CovisitationModel.fit(pl.concat([split.train, split.test_inputs]), CovisitationConfig())
    expected = today.recommend(split.test_inputs, k=params["top_k"])
    # the legacy parameter set is today's configuration, in both YAML shapes (nested and flat)
    legacy, legacy_matrix = recommend_covisitation(
        split.train, split.test_inputs, params | {"variant": "legacy"}
    )
    flat = {"top_k": params["top_k"], **params["legacy"]}
    assert legacy.equals(expected)
    assert legacy_matrix.drop("matrix").equals(today.neighbours)
    assert legacy_matrix["matrix"].unique().to_list() == ["covisitation"]
    assert recommend_covisitation(split.train, split.test_inputs, flat)[0].equals(expected)
    rerank, matrices = recommend_covisitation(split.train, split.test_inputs, params)
    assert sorted(matrices["matrix"].unique()) == sorted(params["candidate_rerank"]["matrices"])
    assert params["variant"] == "candidate_rerank"
    assert rerank.schema == TYPED_CANDIDATE_SCHEMA
    assert rerank["session"].n_unique() == expected["session"].n_unique()
    with pytest.raises(ValueError, match="'newest' is not one of"):
        recommend_covisitation(split.train, split.test_inputs, params | {"variant": "newest"})

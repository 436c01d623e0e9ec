"""The ranking stage: features against a per-row reference, the training timeline, the ranker."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from gnn_recsys.data.schema import EVENT_TYPES, MS_PER_DAY, conform_events
from gnn_recsys.data.split import split_events
from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.evaluation.metrics import evaluate
from gnn_recsys.pipeline_registry import register_pipelines
from gnn_recsys.pipelines.baselines.nodes import recommend_covisitation
from gnn_recsys.pipelines.data_split.nodes import split_local_validation
from gnn_recsys.pipelines.ranking.nodes import label_features, make_features
from gnn_recsys.ranking import (
    CandidateConfig,
    RankerConfig,
    attach_labels,
    build_features,
    candidate_ceiling,
    fusion_candidates,
    rerank,
    train_ranker,
)
from gnn_recsys.ranking.candidates import history_items
from gnn_recsys.ranking.features import covisitation_features
from gnn_recsys.ranking.ranker import cross_fit_rerank, session_folds

T0 = 1_659_304_800_000


def _events(rows: list[tuple[int, int, int, int]]) -> pl.DataFrame:
    """``(session, aid, seconds, type)`` rows -> event table."""
    return conform_events(
        pl.DataFrame(
            {
                "session": [r[0] for r in rows],
                "aid": [r[1] for r in rows],
                "ts": [T0 + r[2] * 1000 for r in rows],
                "type": [r[3] for r in rows],
            }
        )
    )


def _lists(rows: list[tuple], typed: bool, model: str) -> pl.DataFrame:
    columns = ["session", "type", "rank", "aid", "score"] if typed else ["session", "rank", "aid", "score"]
    frame = pl.DataFrame([dict(zip(columns, r, strict=True)) for r in rows])
    return frame.with_columns(pl.lit(model).alias("model"))


# ---------------------------------------------------------------- features vs a per-row reference
SESSION_EVENTS = _events(
    [
        (1, 10, 0, 0), (1, 11, 30, 0), (1, 10, 50, 1), (1, 12, 200, 0), (1, 10, 260, 0),
        (2, 20, 0, 0), (2, 21, 5, 2), (2, 20, 9, 0),
    ]
)  # fmt: skip
FIT_EVENTS = pl.concat(
    [
        _events([(9, 10, -3 * 86400, 0), (9, 30, -3 * 86400 + 1, 1), (8, 11, -100, 2), (8, 30, -50, 0)]),
        SESSION_EVENTS,
    ]
)
COVIS = _lists(
    [(1, 1, 10, 5.0), (1, 2, 30, 3.0), (1, 3, 11, 2.0), (1, 4, 40, 1.0), (2, 1, 30, 4.0), (2, 2, 20, 1.5)],
    typed=False,
    model="covisitation",
)
DGSR = _lists(
    [
        (1, 0, 1, 30, 0.9), (1, 0, 2, 50, 0.8), (1, 1, 1, 10, 0.7), (1, 2, 1, 12, 0.6), (1, 2, 2, 30, 0.5),
        (2, 0, 1, 21, 0.4), (2, 1, 1, 30, 0.3), (2, 2, 1, 20, 0.2),
    ],
    typed=True,
    model="dgsr",
)  # fmt: skip
# Two co-visitation matrices (matrix, aid, neighbour, weight); 99 is linked to nothing in the sessions.
NEIGHBOURS = pl.DataFrame(
    [
        ("clicks", 10, 30, 8.0), ("clicks", 10, 11, 4.0), ("clicks", 11, 30, 2.0), ("clicks", 11, 40, 1.0),
        ("clicks", 12, 10, 3.0), ("clicks", 20, 30, 6.0), ("clicks", 99, 10, 5.0),
        ("buy2buy", 10, 12, 1.0), ("buy2buy", 12, 30, 2.0), ("buy2buy", 12, 40, 4.0), ("buy2buy", 21, 20, 1.0),
    ],
    schema={"matrix": pl.String, "aid": pl.Int32, "neighbour": pl.Int32, "weight": pl.Float32},
    orient="row",
)  # fmt: skip


def _reference_row(
    session: int, type_code: int, aid: int, config: CandidateConfig
) -> dict[str, float | None]:
    """Every feature of one row, computed the slow obvious way from the raw rows."""
    events = [r for r in SESSION_EVENTS.iter_rows(named=True) if r["session"] == session]
    row: dict[str, float | None] = {}
    covis = {r["aid"]: r for r in COVIS.iter_rows(named=True) if r["session"] == session}
    row["covisitation_rank"] = covis[aid]["rank"] if aid in covis else None
    row["covisitation_score"] = covis[aid]["score"] if aid in covis else None
    dgsr_rows = [r for r in DGSR.iter_rows(named=True) if r["session"] == session]
    for code, name in enumerate(EVENT_TYPES):
        hit = [r for r in dgsr_rows if r["type"] == code and r["aid"] == aid]
        row[f"dgsr_rank_{name}"] = hit[0]["rank"] if hit else None
        row[f"dgsr_score_{name}"] = hit[0]["score"] if hit else None
    row["dgsr_rank"] = row[f"dgsr_rank_{EVENT_TYPES[type_code]}"]
    row["dgsr_score"] = row[f"dgsr_score_{EVENT_TYPES[type_code]}"]
    fusion = 0.0
    for source in ("covisitation", "dgsr"):
        if row[f"{source}_rank"] is not None:
            fusion += config.fusion_weights[source] / (config.fusion_offset + row[f"{source}_rank"])
    row["fusion_score"] = fusion
    for code, name in enumerate(EVENT_TYPES):
        row[f"item_{name}"] = sum(1 for e in events if e["aid"] == aid and e["type"] == code)
    positions = [i for i, e in enumerate(events) if e["aid"] == aid]
    row["events_since_last"] = len(events) - 1 - positions[-1] if positions else None
    row["seconds_since_last"] = (events[-1]["ts"] - events[positions[-1]]["ts"]) / 1000 if positions else None
    row["session_length"] = len(events)
    row["session_duration_s"] = (events[-1]["ts"] - events[0]["ts"]) / 1000
    row["session_items"] = len({e["aid"] for e in events})
    fit = list(FIT_EVENTS.iter_rows(named=True))
    last = max(e["ts"] for e in fit)
    for code, name in enumerate(EVENT_TYPES):
        row[f"pop_{name}"] = sum(1 for e in fit if e["aid"] == aid and e["type"] == code)
        row[f"recent_pop_{name}"] = sum(
            1
            for e in fit
            if e["aid"] == aid and e["type"] == code and e["ts"] > last - config.recent_days * MS_PER_DAY
        )
    links = list(NEIGHBOURS.iter_rows(named=True))
    for matrix in ("buy2buy", "clicks"):
        heaviest = {}
        for link in links:
            if link["matrix"] == matrix:
                heaviest[link["aid"]] = max(heaviest.get(link["aid"], 0.0), link["weight"])
        shares = {
            source: next(
                (
                    link["weight"] / heaviest[source]
                    for link in links
                    if link["matrix"] == matrix and link["aid"] == source and link["neighbour"] == aid
                ),
                0.0,
            )
            for source in {e["aid"] for e in events}
        }
        row[f"covis_{matrix}_sum"] = sum(shares.values())
        row[f"covis_{matrix}_max"] = max(shares.values())
        row[f"covis_{matrix}_last"] = shares[events[-1]["aid"]]
    return row


def test_features_match_a_per_row_reference() -> None:
    config = CandidateConfig(source_k={"covisitation": 3, "dgsr": 1}, history_k=2)
    features = build_features(
        {"covisitation": COVIS, "dgsr": DGSR},
        SESSION_EVENTS,
        FIT_EVENTS,
        config,
        covisitation_neighbours=NEIGHBOURS,
    )
    assert features.filter(pl.col("covis_clicks_sum") > 0).height > 0  # the reference below is not all zeros

    # candidates: covisitation's top 3 (one list for every type), DGSR's top 1 of the row's type,
    # the session's 2 most recent distinct items
    expected_keys = set()
    for session in (1, 2):
        covis = [r["aid"] for r in COVIS.iter_rows(named=True) if r["session"] == session and r["rank"] <= 3]
        events = [r["aid"] for r in SESSION_EVENTS.iter_rows(named=True) if r["session"] == session]
        recent = list(dict.fromkeys(reversed(events)))[:2]
        for code in range(3):
            dgsr = [
                r["aid"]
                for r in DGSR.iter_rows(named=True)
                if r["session"] == session and r["type"] == code and r["rank"] <= 1
            ]
            expected_keys |= {(session, code, aid) for aid in covis + dgsr + recent}
    keys = list(zip(features["session"], features["type"], features["aid"], strict=True))
    assert len(keys) == len(set(keys))
    assert set(keys) == expected_keys
    assert keys == sorted(keys, key=lambda k: (k[1], k[0], k[2]))  # lists contiguous per (type, session)

    for row in features.iter_rows(named=True):
        reference = _reference_row(row["session"], row["type"], row["aid"], config)
        for name, value in reference.items():
            got = row[name]
            if value is None:
                assert got is None, (row["session"], row["type"], row["aid"], name, got)
            else:
                assert got == pytest.approx(value, rel=1e-6), (row["session"], row["type"], row["aid"], name)


def test_covisitation_features_do_not_depend_on_the_chunking() -> None:
    history = history_items(SESSION_EVENTS)
    pairs = pl.DataFrame({"session": [1, 1, 1, 2, 2, 2], "aid": [30, 40, 10, 30, 20, 77]})
    whole = covisitation_features(pairs, history, NEIGHBOURS).sort(["session", "aid"])
    per_session = covisitation_features(pairs, history, NEIGHBOURS, join_rows=1).sort(["session", "aid"])
    assert whole.equals(per_session)
    assert whole.height == 6
    # session 2's items (20, 21) reach 30 through clicks (20 -> 30: its list's heaviest) and 20 through buy2buy
    assert whole.filter((pl.col("session") == 2) & (pl.col("aid") == 30))["covis_clicks_max"].item() == 1.0
    assert (
        whole.filter((pl.col("session") == 2) & (pl.col("aid") == 77))
        .select(pl.exclude("session", "aid"))
        .sum_horizontal()
        .item()
        == 0.0
    )
    none = covisitation_features(pairs, history, NEIGHBOURS.clear())
    assert none.columns == ["session", "aid"]
    # no sessions to describe (a run without a test file): an empty table with every column
    empty = covisitation_features(pairs.clear(), history.clear(), NEIGHBOURS)
    assert empty.is_empty() and empty.columns == whole.columns


def test_labels_count_every_label_and_the_ceiling_puts_them_first() -> None:
    features = build_features({"covisitation": COVIS, "dgsr": DGSR}, SESSION_EVENTS, FIT_EVENTS)
    labels = pl.DataFrame(
        {"session": [1, 1, 1, 2], "type": [0, 1, 1, 2], "aid": [30, 10, 999, 21]},
        schema={"session": pl.Int32, "type": pl.Int8, "aid": pl.Int32},
    )
    table = attach_labels(features, labels)
    positives = table.filter(pl.col("target") == 1).select("session", "type", "aid").rows()
    assert sorted(positives) == [(1, 0, 30), (1, 1, 10), (2, 2, 21)]  # 999 is no candidate
    assert table.filter((pl.col("session") == 1) & (pl.col("type") == 1))["n_true"].unique().to_list() == [2]
    ceiling = evaluate(candidate_ceiling(table), labels)
    assert ceiling["recall@20_carts"] == pytest.approx(0.5)  # one of two cart labels is a candidate
    assert ceiling["recall@20_clicks"] == ceiling["recall@20_orders"] == 1.0


def test_fusion_is_the_issue_formula() -> None:
    features = build_features({"covisitation": COVIS, "dgsr": DGSR}, SESSION_EVENTS, FIT_EVENTS)
    fused = fusion_candidates(features, k=50)
    clicks_1 = fused.filter((pl.col("session") == 1) & (pl.col("type") == 0))
    # aid 30: covis rank 2, dgsr clicks rank 1 -> 2/12 + 1/11; aid 10: covis rank 1 -> 2/11
    assert clicks_1["aid"].head(2).to_list() == [30, 10]
    assert clicks_1["score"][0] == pytest.approx(2 / 12 + 1 / 11, rel=1e-6)


# ---------------------------------------------------------------- timeline: no label leakage
def _ranker_training_rows(local_train: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ranker's training rows as the pipeline makes them, by its own node functions: the local
    split, co-visitation fitted before the cut, features, labels."""
    train, inputs, labels, _ = split_local_validation(local_train, {"test_days": 2, "seed": 5})
    covis, neighbours = recommend_covisitation(train, inputs, {"top_k": 20})
    params = {"source_k": {"covisitation": 20}, "history_k": 10, "fusion_weights": {"covisitation": 1.0}}
    features = make_features(inputs, train, params, covisitation_neighbours=neighbours, covisitation=covis)
    assert "covis_covisitation_sum" in features.columns
    return label_features(features, labels), labels


def test_an_event_after_the_local_cut_is_not_seen_by_the_ranker_features() -> None:
    config = SyntheticConfig(
        num_items=200, num_train_sessions=1200, num_test_sessions=0, seed=5, train_days=10
    )
    local_train = split_events(synthetic_events(config, "train"), test_days=3, seed=1).train
    clean, clean_labels = _ranker_training_rows(local_train)

    # Plant the future of ten local test sessions: after its cut each now orders one rare item over
    # and over. Lengths stay the same, so every cut point stays the same.
    split = split_events(local_train, test_days=2, seed=5)
    cut = split.test_inputs.group_by("session").len().rename({"len": "cut"})
    lengths = local_train.group_by("session").len()
    victims = (
        cut.join(lengths, on="session").filter(pl.col("len") - pl.col("cut") >= 2).sort("session").head(10)
    )
    assert victims.height == 10
    rare = int(local_train["aid"].value_counts().sort(["count", "aid"])["aid"][0])
    future = (
        pl.col("session").is_in(victims["session"].implode())
        & (pl.int_range(pl.len()).over("session") >= pl.col("session").replace_strict(
            victims["session"], victims["cut"], default=0))
    )  # fmt: skip
    planted = local_train.with_columns(
        pl.when(future).then(pl.lit(rare, pl.Int32)).otherwise(pl.col("aid")).alias("aid"),
        pl.when(future).then(pl.lit(2, pl.Int8)).otherwise(pl.col("type")).alias("type"),
    )
    leaked, leaked_labels = _ranker_training_rows(planted)

    # the planted orders are labels of the ranker's training rows ...
    planted_orders = leaked_labels.filter((pl.col("type") == 2) & (pl.col("aid") == rare))
    assert set(planted_orders["session"]) == set(victims["session"])
    assert not clean_labels.equals(leaked_labels)
    # ... yet no feature of any row moved: popularity, co-visitation and history ignore them
    features = [c for c in clean.columns if c not in ("target", "n_true")]
    assert leaked.select(features).equals(clean.select(features))
    assert (
        leaked.filter(pl.col("aid") == rare)["pop_orders"].max()
        == clean.filter(pl.col("aid") == rare)["pop_orders"].max()
    )


def test_the_ranker_learns_from_local_labels_its_sources_never_saw() -> None:
    """Wiring: the local test labels reach the ranker (its training table) but none of the candidate
    sources or features, and none of the test file's models or features reach what is scored locally."""
    pipeline = register_pipelines()["dgsr_otto"]
    features = pipeline.to_outputs("ranker_local_features")
    assert "local_test_labels" not in {name for n in features.nodes for name in n.inputs}
    (table_node,) = pipeline.only_nodes_with_outputs("ranker_training_table").nodes
    assert set(table_node.inputs) == {"ranker_local_features", "local_test_labels"}
    for local in ("candidates_reranker", "ranker_model"):
        upstream = {name for n in pipeline.to_outputs(local).nodes for name in n.inputs}
        assert "ranker_training_table" in upstream
        assert not {"dgsr_submission_model", "ranker_test_features", "test_candidates_dgsr"} & upstream, local


# ---------------------------------------------------------------- the ranker
def _carted_item_sessions(
    n_sessions: int, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Sessions of clicks plus one cart; the label of every type is the carted item.

    Both sources' lists are random, so rank fusion is near chance while the session's cart count
    reveals the label: a trained ranker should find it.
    """
    rng = np.random.default_rng(seed)
    events, covis, dgsr, labels = [], [], [], []
    for s in range(n_sessions):
        clicks = rng.choice(200, size=6, replace=False)
        carted = int(clicks[rng.integers(6)])
        for i, aid in enumerate(clicks):
            events.append((s, int(aid), 10 * i, 0))
        events.append((s, carted, 100, 1))
        events.append((s, int(clicks[-1]), 110, 0))
        pool = rng.permutation(200)[:30]
        covis += [(s, r + 1, int(a), float(30 - r)) for r, a in enumerate(pool)]
        for code in range(3):
            pool = rng.permutation(200)[:30]
            dgsr += [(s, code, r + 1, int(a), float(30 - r)) for r, a in enumerate(pool)]
            labels.append((s, code, carted))
    label_frame = pl.DataFrame(
        labels, schema={"session": pl.Int32, "type": pl.Int8, "aid": pl.Int32}, orient="row"
    )
    return _events(events), _lists(covis, False, "covisitation"), _lists(dgsr, True, "dgsr"), label_frame


def _recall(candidates: pl.DataFrame, labels: pl.DataFrame) -> dict[str, float]:
    metrics = evaluate(candidates, labels)
    return {name: metrics[f"recall@20_{name}"] for name in EVENT_TYPES}


def test_ranker_beats_fusion_where_a_feature_reveals_the_label() -> None:
    events, covis, dgsr, labels = _carted_item_sessions(700, seed=0)
    table = attach_labels(build_features({"covisitation": covis, "dgsr": dgsr}, events, events), labels)
    train = table.filter(pl.col("session") < 500)
    model, report = train_ranker(train, ["covisitation", "dgsr"], {"covisitation": 2.0, "dgsr": 1.0}, 10.0,
                                 RankerConfig(num_boost_round=60, lgbm={"num_threads": 1}))  # fmt: skip
    assert {entry["chosen"] for entry in report.values()} == {"lightgbm"}
    assert report["carts"]["importance_gain"]["item_carts"] == max(
        report["carts"]["importance_gain"].values()
    )

    held_out = table.filter(pl.col("session") >= 500)
    test_labels = labels.filter(pl.col("session") >= 500)
    reranked = _recall(rerank(model, held_out, k=20), test_labels)
    fused = _recall(fusion_candidates(held_out, k=20), test_labels)
    for name in EVENT_TYPES:
        assert reranked[name] > 0.95 > fused[name] + 0.3


def test_tiny_data_falls_back_to_a_learned_blend() -> None:
    events, covis, dgsr, _ = _carted_item_sessions(40, seed=1)
    # labels: DGSR's 15th item of each type's list (rank fusion puts co-visitation's 30 items above it)
    labels = dgsr.filter(pl.col("rank") == 15).select("session", "type", "aid")
    table = attach_labels(build_features({"covisitation": covis, "dgsr": dgsr}, events, events), labels)
    model, report = train_ranker(table, ["covisitation", "dgsr"], {"covisitation": 2.0, "dgsr": 1.0}, 10.0)
    for name in EVENT_TYPES:
        assert model["types"][name]["kind"] == "blend"
        assert report[name]["chosen"] == "blend"
        weights = model["types"][name]["weights"]
        assert weights["covisitation"] < weights["dgsr"]  # learned: trust DGSR here
    reranked = rerank(model, table, k=20)
    assert reranked.columns == ["session", "type", "rank", "aid", "score", "model"]
    assert reranked.group_by(["session", "type"]).len().height == 40 * 3
    assert _recall(reranked, labels) == dict.fromkeys(EVENT_TYPES, 1.0)
    assert max(_recall(fusion_candidates(table, k=20), labels).values()) < 0.5


def test_no_labels_at_all_gives_the_rank_fusion() -> None:
    features = build_features({"covisitation": COVIS, "dgsr": DGSR}, SESSION_EVENTS, FIT_EVENTS)
    empty = pl.DataFrame(schema={"session": pl.Int32, "type": pl.Int8, "aid": pl.Int32})
    model, _ = train_ranker(
        attach_labels(features, empty), ["covisitation", "dgsr"], {"covisitation": 2.0, "dgsr": 1.0}, 10.0
    )
    reranked = rerank(model, features, k=50)
    fused = fusion_candidates(features, k=50)
    assert reranked.select("session", "type", "rank", "aid").equals(
        fused.select("session", "type", "rank", "aid")
    )
    assert not math.isnan(float(reranked["score"].sum()))


def test_no_test_sessions_give_an_empty_valid_table() -> None:
    """Without a test file the test features are empty; reranking them must still work."""
    empty_covis = COVIS.clear()
    empty_dgsr = DGSR.clear()
    features = build_features(
        {"covisitation": empty_covis, "dgsr": empty_dgsr}, SESSION_EVENTS.clear(), FIT_EVENTS
    )
    assert features.height == 0 and "pop_orders" in features.columns
    model, _ = train_ranker(
        attach_labels(features, pl.DataFrame(schema={"session": pl.Int32, "type": pl.Int8, "aid": pl.Int32})),
        ["covisitation", "dgsr"],
        {"covisitation": 2.0, "dgsr": 1.0},
        10.0,
    )
    reranked = rerank(model, features, k=20)
    assert reranked.height == 0 and reranked.columns == ["session", "type", "rank", "aid", "score", "model"]


def test_session_folds_are_balanced_seeded_and_cover_every_session() -> None:
    sessions = np.arange(100, 203)
    folds = session_folds(sessions, 4, seed=3)
    assert np.array_equal(folds, session_folds(sessions, 4, seed=3))
    assert not np.array_equal(folds, session_folds(sessions, 4, seed=4))
    assert sorted(np.bincount(folds).tolist()) == [25, 26, 26, 26]
    with pytest.raises(ValueError, match="cross_fit_folds"):
        RankerConfig(cross_fit_folds=1)


def test_cross_fit_ranks_each_session_by_a_model_that_never_saw_its_labels() -> None:
    events, covis, dgsr, labels = _carted_item_sessions(600, seed=2)
    features = build_features({"covisitation": covis, "dgsr": dgsr}, events, events)
    config = RankerConfig(num_boost_round=40, cross_fit_folds=3, lgbm={"num_threads": 1})
    args = (["covisitation", "dgsr"], {"covisitation": 2.0, "dgsr": 1.0}, 10.0, config)
    reranked, summary = cross_fit_rerank(attach_labels(features, labels), *args)
    assert [fold["sessions"] for fold in summary] == [200, 200, 200]
    assert {fold[name] for fold in summary for name in EVENT_TYPES} == {"lightgbm"}
    assert reranked.group_by(["session", "type"]).len().height == 600 * 3
    # out of fold, the ranker still finds the carted item the fusion cannot
    for name in EVENT_TYPES:
        assert (
            _recall(reranked, labels)[name]
            > 0.95
            > _recall(fusion_candidates(features, k=50), labels)[name] + 0.3
        )

    # Give fold 0's sessions other labels: their own lists must not move (their ranker never saw
    # them), while the other folds' lists do (their rankers trained on the changed sessions).
    fold = session_folds(np.arange(600), 3, config.seed)
    fold0 = pl.Series(np.flatnonzero(fold == 0).astype(np.int32))
    moved = labels.join(dgsr.filter(pl.col("rank") == 7).select("session", "type", pl.col("aid").alias("other")),
                        on=["session", "type"]).with_columns(
        pl.when(pl.col("session").is_in(fold0.implode())).then(pl.col("other")).otherwise(pl.col("aid")).alias("aid")
    ).drop("other")  # fmt: skip
    reranked_moved, _ = cross_fit_rerank(attach_labels(features, moved), *args)
    in_fold0 = pl.col("session").is_in(fold0.implode())
    assert (
        reranked_moved.filter(in_fold0)
        .select("session", "type", "rank", "aid")
        .equals(reranked.filter(in_fold0).select("session", "type", "rank", "aid"))
    )
    assert not reranked_moved.filter(~in_fold0).equals(reranked.filter(~in_fold0))

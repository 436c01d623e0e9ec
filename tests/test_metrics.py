"""Tests for the OTTO score and next-click ranking metrics."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from gnn_recsys.evaluation.metrics import evaluate, metrics_frame, metrics_table
from gnn_recsys.export.candidates import CANDIDATE_SCHEMA, to_submission

CLICK, CART, ORDER = 0, 1, 2


def labels_frame(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"session": pl.Int32, "type": pl.Int8, "aid": pl.Int32}, orient="row")


def candidates_frame(lists: dict[int, list[int]], model: str = "m") -> pl.DataFrame:
    rows = [(s, r + 1, aid, float(-r), model) for s, aids in lists.items() for r, aid in enumerate(aids)]
    return pl.DataFrame(
        rows,
        schema=CANDIDATE_SCHEMA,
        orient="row",
    )


HAND_LABELS = labels_frame(
    [
        (1, CLICK, 10), (1, CART, 20), (1, CART, 21), (1, ORDER, 30),
        (2, CLICK, 11), (2, CART, 1000), (2, CART, 1001), (2, CART, 1002), (2, CART, 1003),
        (3, ORDER, 40), (3, ORDER, 41),
        (4, CLICK, 99),
    ]
)  # fmt: skip
HAND_CANDIDATES = candidates_frame(
    {
        1: [20, 10, 30, 21],
        2: [1000, 1000, 11, 1001],  # duplicate 1000 counts once and takes one slot: [1000, 11, 1001]
        3: [40, 7, 41],
        5: [1, 2, 3],  # unlabelled session: ignored
    }
)  # session 4 has labels but no candidates


def test_hand_computed_scores() -> None:
    result = evaluate(HAND_CANDIDATES, HAND_LABELS, k=3, ks=(1, 3))
    # clicks: s1 hit (rank 2), s2 hit (position 2), s4 no candidates -> 2 / 3
    assert result["recall@3_clicks"] == pytest.approx(2 / 3)
    # carts: s1 {20} of {20,21} -> 1 / min(3,2); s2 {1000, 1001} of 4 -> 2 / min(3,4)  => 3 / 5
    assert result["recall@3_carts"] == pytest.approx(3 / 5)
    # orders: s1 1/1, s3 2/2 (41 at rank 3 is inside the cut) => 3 / 3
    assert result["recall@3_orders"] == pytest.approx(1.0)
    assert result["score"] == pytest.approx(0.1 * 2 / 3 + 0.3 * 0.6 + 0.6 * 1.0)
    # next click positions: s1 2, s2 2 (after the duplicate 1000), s4 missing
    assert result["hr@1"] == 0.0
    assert result["hr@3"] == pytest.approx(2 / 3)
    assert result["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(3)) / 3)
    assert result["mrr@3"] == pytest.approx((1 / 2 + 1 / 2) / 3)
    assert result["mrr@1"] == 0.0 and result["ndcg@1"] == 0.0
    assert result["n_sessions"] == 4
    assert result["n_sessions_clicks"] == 3
    assert result["n_sessions_carts"] == 2
    assert result["n_sessions_orders"] == 2
    assert result["n_labels_carts"] == 6
    assert result["n_sessions_without_candidates"] == 1


def test_default_keys() -> None:
    result = evaluate(HAND_CANDIDATES, HAND_LABELS)
    for key in (
        "recall@20_clicks",
        "recall@20_carts",
        "recall@20_orders",
        "score",
        "hr@20",
        "ndcg@20",
        "mrr@20",
    ):
        assert key in result
    # With every candidate inside the top 20 the click recall is the hit rate.
    assert result["recall@20_clicks"] == result["hr@20"] == pytest.approx(2 / 3)
    assert result["recall@20_carts"] == pytest.approx(4 / 6)  # hits s1: 20, 21; s2: 1000, 1001


def test_recall_denominator_is_capped_at_k() -> None:
    true_carts = list(range(100, 125))  # 25 later carts
    labels = labels_frame([(1, CART, aid) for aid in true_carts])
    perfect = candidates_frame({1: true_carts[:20]})
    assert evaluate(perfect, labels)["recall@20_carts"] == 1.0  # 20 / min(20, 25)
    half = candidates_frame({1: true_carts[:10] + list(range(1, 11))})
    assert evaluate(half, labels)["recall@20_carts"] == 0.5
    # Items beyond rank 20 never count.
    late = candidates_frame({1: list(range(1, 21)) + true_carts})
    assert evaluate(late, labels)["recall@20_carts"] == 0.0


def test_duplicate_candidates_count_once() -> None:
    labels = labels_frame([(1, CART, 5), (1, CART, 6), (1, CLICK, 5)])
    duplicated = candidates_frame({1: [5, 5, 5, 9]})
    result = evaluate(duplicated, labels, k=3, ks=(3,))
    assert result["recall@3_carts"] == 0.5  # one hit of two, not three
    assert result["mrr@3"] == 1.0  # the best rank of aid 5 is 1
    # Duplicates are dropped before the cut, as in the exported file: [5, 6] fills two of three slots.
    later = candidates_frame({1: [5, 5, 5, 6]})
    assert evaluate(later, labels, k=3)["recall@3_carts"] == 1.0


def test_dataset_without_orders_renormalises_weights() -> None:
    labels = labels_frame([(1, CLICK, 1), (1, CART, 2), (2, CLICK, 3), (2, CART, 4)])
    cands = candidates_frame({1: [1, 2], 2: [9, 4]})
    result = evaluate(cands, labels)
    assert result["recall@20_orders"] is None
    assert result["recall@20_clicks"] == 0.5
    assert result["recall@20_carts"] == 1.0
    assert result["score"] == pytest.approx((0.1 * 0.5 + 0.3 * 1.0) / 0.4)
    assert result["n_sessions_orders"] == 0


def test_no_labels_at_all() -> None:
    result = evaluate(HAND_CANDIDATES, labels_frame([]), ks=(5, 20))
    assert result["score"] is None
    for key in ("recall@20_clicks", "recall@20_carts", "recall@20_orders", "hr@5", "ndcg@20", "mrr@20"):
        assert result[key] is None
    assert result["n_sessions"] == 0 and result["n_sessions_without_candidates"] == 0


def test_bad_inputs() -> None:
    two_models = pl.concat([candidates_frame({1: [1]}, "a"), candidates_frame({1: [1]}, "b")])
    with pytest.raises(ValueError, match="several models"):
        evaluate(two_models, HAND_LABELS)
    zero_rank = candidates_frame({1: [1]}).with_columns(pl.lit(0, pl.Int32).alias("rank"))
    with pytest.raises(ValueError, match="row 0, field 'rank'"):
        evaluate(zero_rank, HAND_LABELS)
    with pytest.raises(ValueError, match="different click labels"):
        evaluate(HAND_CANDIDATES, labels_frame([(1, CLICK, 1), (1, CLICK, 2)]))
    with pytest.raises(ValueError, match="missing column"):
        evaluate(HAND_CANDIDATES.drop("rank"), HAND_LABELS)


def deduplicated(lists: dict[int, list[int]]) -> dict[int, list[int]]:
    """Each list with later repeats of an aid removed, as the submission export writes it."""
    return {session: list(dict.fromkeys(aids)) for session, aids in lists.items()}


def official_reference(lists: dict[int, list[int]], labels: list[tuple[int, int, int]], k: int) -> dict:
    """The official evaluate.py computation written out with loops (aid 0 treated as an item)."""
    truth: dict[int, dict] = {}
    for session, event_type, aid in labels:
        entry = truth.setdefault(session, {"clicks": None, "carts": set(), "orders": set()})
        if event_type == CLICK:
            entry["clicks"] = aid
        else:
            entry["carts" if event_type == CART else "orders"].add(aid)
    hits = {"clicks": 0, "carts": 0, "orders": 0}
    totals = {"clicks": 0, "carts": 0, "orders": 0}
    for session, entry in truth.items():
        top = set(lists.get(session, [])[:k])  # the official prediction[:k] on a submission's list
        if entry["clicks"] is not None:
            totals["clicks"] += 1
            hits["clicks"] += entry["clicks"] in top
        for name in ("carts", "orders"):
            if entry[name]:
                totals[name] += min(k, len(entry[name]))
                hits[name] += len(top & entry[name])
    recalls = {name: hits[name] / totals[name] for name in hits}
    recalls["total"] = 0.1 * recalls["clicks"] + 0.3 * recalls["carts"] + 0.6 * recalls["orders"]
    return recalls


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_official_reference_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lists = {s: rng.integers(0, 60, size=int(rng.integers(0, 30))).tolist() for s in range(300)}
    label_rows = []
    for s in range(0, 320):
        if rng.random() < 0.8:
            label_rows.append((s, CLICK, int(rng.integers(0, 60))))
        for event_type in (CART, ORDER):
            if rng.random() < 0.4:
                label_rows.extend(
                    (s, event_type, int(a)) for a in rng.integers(0, 60, size=rng.integers(1, 30))
                )
    # The official script scores a submission file, whose lists hold each aid once (first = best rank).
    expected = official_reference(deduplicated(lists), label_rows, k=20)
    result = evaluate(candidates_frame(lists), labels_frame(label_rows))
    assert result["recall@20_clicks"] == pytest.approx(expected["clicks"])
    assert result["recall@20_carts"] == pytest.approx(expected["carts"])
    assert result["recall@20_orders"] == pytest.approx(expected["orders"])
    assert result["score"] == pytest.approx(expected["total"])


def test_metrics_table_and_frame() -> None:
    results = {
        "popularity": {"score": 0.12345, "recall@20_orders": None, "n_sessions": 10},
        "covisitation": {"score": 0.5, "recall@20_orders": 0.25, "n_sessions": 10, "hr@50": 0.75},
    }
    table = metrics_table(results)
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "popularity", "covisitation"]
    assert lines[2].split() == ["score", "0.1235", "0.5000"]
    assert lines[3].split() == ["recall@20_orders", "-", "0.2500"]
    assert lines[4].split() == ["n_sessions", "10", "10"]
    assert lines[5].split() == ["hr@50", "-", "0.7500"]

    frame = metrics_frame(results)
    assert frame.columns == ["model", "score", "recall@20_orders", "n_sessions", "hr@50"]
    assert frame["model"].to_list() == ["popularity", "covisitation"]
    assert frame["recall@20_orders"].to_list() == [None, 0.25]
    assert frame["hr@50"].to_list() == [None, 0.75]
    assert frame.schema["n_sessions"] == pl.Float64


def test_ranking_metrics_look_beyond_the_recall_cut() -> None:
    labels = labels_frame([(1, CLICK, 500), (2, CLICK, 7)])
    cands = candidates_frame({1: list(range(29)) + [500] + list(range(600, 610)), 2: [7]})
    result = evaluate(cands, labels, ks=(10, 50))
    assert result["recall@20_clicks"] == 0.5  # rank 30 is outside the top 20
    assert result["hr@10"] == 0.5
    assert result["hr@50"] == 1.0
    assert result["mrr@50"] == pytest.approx((1 / 30 + 1.0) / 2)
    assert result["ndcg@50"] == pytest.approx((1 / math.log2(31) + 1.0) / 2)


def typed_frame(lists_by_type: dict[int, dict[int, list[int]]], model: str = "m") -> pl.DataFrame:
    """A typed candidates table: one ranked list per (session, type)."""
    parts = [
        candidates_frame(lists, model).with_columns(pl.lit(code, pl.Int8).alias("type"))
        for code, lists in lists_by_type.items()
    ]
    return pl.concat(parts).select("session", "type", "rank", "aid", "score", "model")


TYPED_LABELS = labels_frame(
    [
        (1, CLICK, 10), (1, CART, 20), (1, CART, 21), (1, ORDER, 30),
        (2, CLICK, 11), (2, CART, 40),
        (3, ORDER, 50), (3, ORDER, 51),
        (4, CLICK, 99),  # no candidates at all
        (5, CART, 60),  # only a clicks list, which holds the cart
    ]
)  # fmt: skip
TYPED_CLICK_LISTS = {1: [10, 20, 30], 2: [40, 11], 5: [60]}
TYPED_CANDIDATES = typed_frame(
    {
        CLICK: TYPED_CLICK_LISTS,
        CART: {1: [21, 20, 6], 2: [11, 41]},  # 11 (the next click) at rank 1 of s2's carts list
        ORDER: {1: [30, 8, 9], 3: [50, 1, 51]},
    }
)


def test_typed_candidates_score_each_type_against_its_own_list() -> None:
    typed = evaluate(TYPED_CANDIDATES, TYPED_LABELS, k=3, ks=(1, 3))
    # clicks (clicks lists): s1 10 at rank 1, s2 11 at rank 2, s4 nothing -> 2 / 3
    assert typed["recall@3_clicks"] == pytest.approx(2 / 3)
    # carts (carts lists): s1 {20, 21} both -> 2 / 2; s2 {40} not in [11, 41] -> 0 / 1;
    # s5 has no carts list -> 0 / 1 (its clicks list holding 60 does not count)  => 2 / 4
    assert typed["recall@3_carts"] == pytest.approx(2 / 4)
    # orders (orders lists): s1 {30} -> 1 / 1; s3 {50, 51} -> 2 / 2  => 3 / 3
    assert typed["recall@3_orders"] == pytest.approx(1.0)
    assert typed["score"] == pytest.approx(0.1 * 2 / 3 + 0.3 * 0.5 + 0.6 * 1.0)
    # Next click from the clicks list only: s2's 11 is rank 2 there, though rank 1 in its carts list.
    assert typed["hr@1"] == pytest.approx(1 / 3)
    assert typed["mrr@1"] == pytest.approx(1 / 3)
    assert typed["hr@3"] == pytest.approx(2 / 3)
    assert typed["mrr@3"] == pytest.approx((1 + 1 / 2) / 3)
    assert typed["ndcg@3"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert typed["n_sessions"] == 5
    assert typed["n_sessions_without_candidates"] == 1  # s4; s3 and s5 each have some list

    # The untyped path with the clicks lists serving all types gives different recalls.
    untyped = evaluate(candidates_frame(TYPED_CLICK_LISTS), TYPED_LABELS, k=3, ks=(1, 3))
    assert untyped["recall@3_clicks"] == pytest.approx(2 / 3)
    # carts: s1 {20} -> 1; s2 {40} -> 1; s5 {60} -> 1  => 3 / 4
    assert untyped["recall@3_carts"] == pytest.approx(3 / 4)
    # orders: s1 {30} -> 1; s3 has no list -> 0  => 1 / 3
    assert untyped["recall@3_orders"] == pytest.approx(1 / 3)
    assert untyped["n_sessions_without_candidates"] == 2  # s3, s4


def test_typed_table_with_one_list_copied_per_type_matches_untyped() -> None:
    lists = {1: [20, 10, 30, 21], 2: [1000, 1000, 11, 1001], 3: [40, 7, 41], 4: [5]}
    typed = typed_frame({code: lists for code in (CLICK, CART, ORDER)})
    assert evaluate(typed, HAND_LABELS, k=3, ks=(1, 3)) == evaluate(
        candidates_frame(lists), HAND_LABELS, k=3, ks=(1, 3)
    )


@pytest.mark.parametrize("seed", [3, 4])
def test_typed_matches_official_reference_per_type(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lists_by_type = {
        code: {
            s: rng.integers(0, 40, size=int(rng.integers(1, 30))).tolist()
            for s in range(200)
            if rng.random() < 0.7
        }
        for code in (CLICK, CART, ORDER)
    }
    label_rows = []
    for s in range(220):
        if rng.random() < 0.8:
            label_rows.append((s, CLICK, int(rng.integers(0, 40))))
        for event_type in (CART, ORDER):
            if rng.random() < 0.5:
                label_rows.extend(
                    (s, event_type, int(a)) for a in rng.integers(0, 40, size=rng.integers(1, 25))
                )
    result = evaluate(typed_frame(lists_by_type), labels_frame(label_rows))
    for code, name in ((CLICK, "clicks"), (CART, "carts"), (ORDER, "orders")):
        expected = official_reference(deduplicated(lists_by_type[code]), label_rows, k=20)[name]
        assert result[f"recall@20_{name}"] == pytest.approx(expected)


def test_typed_candidates_validation() -> None:
    null_type = TYPED_CANDIDATES.with_columns(
        pl.when(pl.col("session") == 2).then(None).otherwise(pl.col("type")).alias("type")
    )
    first_null = int(null_type["type"].is_null().arg_true()[0])
    with pytest.raises(ValueError, match=rf"row {first_null}, field 'type': null in a typed table"):
        evaluate(null_type, TYPED_LABELS)
    bad_code = TYPED_CANDIDATES.with_columns(pl.Series("type", [5] + [0] * (TYPED_CANDIDATES.height - 1)))
    with pytest.raises(ValueError, match="row 0, field 'type': unknown event type code 5"):
        evaluate(bad_code, TYPED_LABELS)
    text_type = TYPED_CANDIDATES.with_columns(pl.lit("clicks").alias("type"))
    with pytest.raises(ValueError, match="row 0, field 'type': unknown event type code 'clicks'"):
        evaluate(text_type, TYPED_LABELS)
    two_models = pl.concat([TYPED_CANDIDATES, TYPED_CANDIDATES.with_columns(pl.lit("x").alias("model"))])
    with pytest.raises(ValueError, match="several models"):
        evaluate(two_models, TYPED_LABELS)


def test_tied_and_gapped_ranks_never_give_recall_above_one() -> None:
    """30 distinct candidates all at rank 1 fill only k = 20 slots (the official prediction[:20])."""
    true_orders = list(range(100, 130))
    labels = labels_frame([(1, ORDER, aid) for aid in true_orders])
    tied = candidates_frame({1: true_orders}).with_columns(pl.lit(1, pl.Int32).alias("rank"))
    result = evaluate(tied, labels)
    assert result["recall@20_orders"] == 1.0  # 20 hits / min(20, 30), not 30 / 20
    # Ranks with gaps (10, 20, 30, ...) order the list but are not positions.
    gapped = candidates_frame({1: true_orders}).with_columns((pl.col("rank") * 10).alias("rank"))
    assert evaluate(gapped, labels)["recall@20_orders"] == 1.0
    # Ties are broken by the smaller aid, as in the export: the 20 smallest aids are the hits.
    few = labels_frame([(1, ORDER, 100), (1, ORDER, 129)])
    assert evaluate(tied, few)["recall@20_orders"] == 0.5


@pytest.mark.parametrize("seed", [5, 6])
def test_local_score_equals_the_exported_submission_score(seed: int) -> None:
    """Duplicates and tied ranks: scoring the exported CSV with the official code gives the same numbers."""
    rng = np.random.default_rng(seed)
    rows = [
        (s, int(rng.integers(1, 8)), int(rng.integers(0, 50)), 0.0, "m")
        for s in range(150)
        for _ in range(int(rng.integers(1, 40)))
    ]
    candidates = pl.DataFrame(
        rows,
        schema=CANDIDATE_SCHEMA,
        orient="row",
    )
    label_rows = [(s, CLICK, int(rng.integers(0, 50))) for s in range(150)]
    label_rows += [(s, event_type, int(a)) for event_type in (CART, ORDER) for s in range(0, 150, 2)
                   for a in rng.integers(0, 50, size=25)]  # fmt: skip
    submission = to_submission(candidates, k=20)
    exported = {
        int(session_type.split("_")[0]): [int(a) for a in labels.split()]
        for session_type, labels in submission.iter_rows()
        if session_type.endswith("_orders")
    }
    expected = official_reference(exported, label_rows, k=20)
    result = evaluate(candidates, labels_frame(label_rows))
    assert result["recall@20_clicks"] == pytest.approx(expected["clicks"])
    assert result["recall@20_orders"] == pytest.approx(expected["orders"])
    assert result["recall@20_orders"] <= 1.0


def test_repeat_and_new_labels_are_scored_apart() -> None:
    # Session 1 saw aids 5 and 6; session 2 saw 7. Orders 5 (repeat), 9 (new); click 7 (repeat).
    history = pl.DataFrame(
        {"session": [1, 1, 2], "aid": [5, 6, 7]}, schema={"session": pl.Int32, "aid": pl.Int32}
    )
    labels = labels_frame([(1, 2, 5), (1, 2, 9), (2, 0, 7), (2, 2, 8)])
    lists = {1: [9, 1, 2], 2: [7, 8]}
    got = evaluate(candidates_frame(lists), labels, k=20, history=history)
    assert got["share_repeat_orders"] == pytest.approx(1 / 3)  # 5 is a repeat; 9 and 8 are new
    assert got["hit@20_orders_repeat"] == 0.0  # 5 is not in session 1's list
    assert got["hit@20_orders_new"] == 1.0  # 9 and 8 both are
    assert got["share_repeat_clicks"] == 1.0 and got["hit@20_clicks_repeat"] == 1.0
    assert got["hit@20_clicks_new"] is None
    assert "share_repeat_carts" not in got  # no cart labels
    assert "hit@20_orders_repeat" not in evaluate(candidates_frame(lists), labels, k=20)  # no history given
